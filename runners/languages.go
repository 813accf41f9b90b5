package runners

import (
	"io/fs"
	"path/filepath"
	"slices"
	"sort"

	"bridge/perl"
	"bridge/python"
	"bridge/ruby"
)

// Language describes how to run one kind of shim. Adding a language is a new
// entry here plus its shim folder.
type Language struct {
	// Name is the --runner prefix.
	Name string
	// EnvVar names the variable that may hold the interpreter's path.
	EnvVar string
	// Candidates are tried in order after --interpreter and EnvVar.
	Candidates []string
	// Probe is the interpreter argv tail that exits 0 only when the shim's
	// dependencies import.
	Probe []string
	// Install says what to install when no candidate passes Probe.
	Install string
	// Shim is the shim's source tree; it is extracted once per version.
	Shim fs.FS
	// Args builds the interpreter argv tail that starts the shim (extracted
	// to shimDir) for app.
	Args func(shimDir, app string) []string
	// PathEnv names the variable through which the shim's directory is made
	// importable (PYTHONPATH, PERL5LIB, RUBYLIB).
	PathEnv string
	// Modifier1 is the uwsgi packet modifier1 that nginx's uwsgi_modifier1
	// sets for this interface in uWSGI configs (0 WSGI, 5 PSGI, 7 Rack).
	Modifier1 uint8
	// ParseApp checks the --runner target after "LANGUAGE:" and returns
	// what the shim loads; nil takes the target as it is (a file name).
	ParseApp func(target string) (string, error)
}

// Languages is the table of built-in runners, keyed by --runner prefix.
var Languages = map[string]Language{
	"python": {
		Name:   "python",
		EnvVar: "BRIDGE_PYTHON",
		// The first python3 on PATH may be a private build (pyenv, venv)
		// that cannot see Debian's packages; the system one usually can.
		Candidates: []string{"python3", "/usr/bin/python3"},
		// The runner's own gRPC server needs h2, not grpcio.
		Probe:     []string{"-c", "import h2, google.protobuf"},
		Install:   "apt-get install python3-h2 python3-protobuf (Debian/Ubuntu), or pip install h2 protobuf into the interpreter given by --interpreter",
		Shim:      python.Shim,
		Args:      func(_, app string) []string { return []string{"-m", "bridge_runner", "--app", app} },
		PathEnv:   "PYTHONPATH",
		Modifier1: 0,
		ParseApp:  pythonApp,
	},
	"perl": {
		Name:       "perl",
		EnvVar:     "BRIDGE_PERL",
		Candidates: []string{"perl", "/usr/bin/perl"},
		Probe:      []string{"-MProtocol::HTTP2::Server", "-MPlack::Util", "-e1"},
		Install:    "apt-get install libprotocol-http2-perl libplack-perl (Debian/Ubuntu)",
		Shim:       perl.Shim,
		Args: func(shimDir, app string) []string {
			return []string{filepath.Join(shimDir, "bin", "bridge-psgi-runner"), "--app", app}
		},
		PathEnv:   "PERL5LIB",
		Modifier1: 5,
	},
	"ruby": {
		Name:       "ruby",
		EnvVar:     "BRIDGE_RUBY",
		Candidates: []string{"ruby", "/usr/bin/ruby"},
		// The runner's own gRPC server needs protocol-http2; ruby-grpc is
		// only the tests' client.
		Probe:   []string{"-e", "require 'protocol/http2/server'; require 'google/protobuf'; require 'rack'"},
		Install: "apt-get install ruby-protocol-http2 ruby-google-protobuf ruby-rack (Debian/Ubuntu)",
		Shim:    ruby.Shim,
		Args: func(shimDir, app string) []string {
			return []string{filepath.Join(shimDir, "bin", "bridge-rack-runner"), "--app", app}
		},
		PathEnv:   "RUBYLIB",
		Modifier1: 7,
	},
}

// AppModifiers is the set of uwsgi modifier1 values that name an
// application interface in the table, sorted. With one runner behind
// bridge, every one of them reaches it: a uWSGI config written for any
// interface keeps working, whatever the runner.
func AppModifiers() []uint8 {
	var ms []uint8
	for _, l := range Languages {
		if !slices.Contains(ms, l.Modifier1) {
			ms = append(ms, l.Modifier1)
		}
	}
	slices.Sort(ms)
	return ms
}

// LanguageNames lists the built-in languages, sorted, for messages.
func LanguageNames() []string {
	names := make([]string, 0, len(Languages))
	for n := range Languages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
