package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"bridge/bridge/logx"
	"bridge/bridge/supervise"
	"bridge/runners"
)

const usage = `bridge — an application server for Python (WSGI), Perl (PSGI) and Ruby
(Rack) apps behind nginx.

Usage:
  bridge serve --runner SPEC [--uwsgi ADDR] [--http ADDR] [flags]
  bridge serve --config FILE [flags]
  bridge check --runner SPEC [flags]
  bridge check --config FILE [flags]
  bridge conform --runner SPEC [--chdir DIR]
  bridge healthcheck [--admin ADDR | --config FILE]
  bridge shims
  bridge version

Runner specs:
  python:MODULE:CALLABLE   a WSGI callable, e.g. python:myproject.wsgi:application
  perl:FILE.psgi           a PSGI app file, e.g. perl:app.psgi
  ruby:FILE.ru             a Rack config file, e.g. ruby:config.ru
  exec:CMD ARGS…           any runner plugin (see runners/CONTRACT.md)

Commands:
  serve     load the app in --workers runner processes and serve it
  check     load the app once, report what was found, exit non-zero on failure
  conform   check a runner against the runner contract with its kit app
            (runners/kit/README.md), one line per check
  healthcheck
            GET /readyz on the admin listener: exit 0 if ready, else 1
            and the reason (the images' HEALTHCHECK)
  shims     extract the runner shims into the shim cache, for images
            whose root filesystem will be read-only
  version   print the version

Run 'bridge serve -h', 'bridge check -h' or 'bridge healthcheck -h' for flags. Every flag can also be
set in the environment as BRIDGE_<FLAG>, e.g. BRIDGE_WORKERS=4, or in a YAML
file given with --config FILE (or BRIDGE_CONFIG) whose keys are flag names,
e.g. "workers: 4". The command line wins over the environment, which wins
over the file. 'bridge check --config FILE' checks the whole file.

Example (nginx: uwsgi_pass unix:/run/app.sock; include uwsgi_params;):
  bridge serve --runner python:app:application --uwsgi unix:/run/app.sock

Under systemd socket activation, a listener address fd:NAME is the socket
the .socket unit passed with FileDescriptorName=NAME, e.g. --uwsgi fd:uwsgi
(deploy/systemd/README.md). bridge serve tells a Type=notify service READY=1
once its workers are ready.
`

// Run executes one bridge command line (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	st := &runState{stderr: stderr}
	defer st.cleanUp()
	ctx = context.WithValue(ctx, runStateKey{}, st)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError("no command given")
	}
	if path := os.Getenv("BRIDGE_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "check":
		return check(ctx, args[1:], stdout, stderr)
	case "conform":
		return conformCmd(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args[1:], stdout, stderr)
	case "shims":
		return shimsCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "bridge", Version())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError(fmt.Sprintf("unknown command %q", args[0]))
	}
}

// Version is the module version, or the VCS revision for a source build.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return strings.TrimSpace(v)
}

// runState is what one Run keeps for the commands it runs: where to warn,
// and what to remove once the command is over.
type runState struct {
	stderr   io.Writer
	mu       sync.Mutex
	cleanups []func()
}

type runStateKey struct{}

func (s *runState) onExit(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *runState) cleanUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.cleanups {
		f()
	}
	s.cleanups = nil
}

// runnerCommand resolves the --runner spec to the command that starts one
// runner process: interpreter discovery and shim extraction for built-in
// languages, the given argv for exec runners.
func runnerCommand(ctx context.Context, o *options) (supervise.Command, error) {
	if o.runner == "" {
		return supervise.Command{}, usageError("--runner is required, e.g. --runner python:app:application")
	}
	spec, err := runners.ParseSpec(o.runner)
	if err != nil {
		return supervise.Command{}, usageError(err.Error())
	}
	if err := checkRunnerEnv(o.env); err != nil {
		return supervise.Command{}, err
	}
	if st, ok := ctx.Value(runStateKey{}).(*runState); ok {
		warn := func(err error, dir string) {
			// In the command's log format; conform has none of its own.
			log, lerr := newLogger(o, st.stderr)
			if lerr != nil {
				log = zerolog.New(st.stderr).With().Timestamp().Logger()
			}
			untrustedCacheWarning(log.Warn(), err, dir)
		}
		return runnerCommandWith(ctx, spec, o.chdir, o.interpreter, o.logLevel, o.env, shimPlace{warn: warn, onExit: st.onExit})
	}
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	return runnerCommandWith(ctx, spec, o.chdir, o.interpreter, o.logLevel, o.env, shimPlace{
		warn: func(err error, dir string) { untrustedCacheWarning(log.Warn(), err, dir) },
	})
}

// checkRunnerEnv checks --env entries: KEY=VALUE with a name a process
// environment can hold, and none of bridge's own BRIDGE_* names, which
// bridge sets for the runner (BRIDGE_GRACE, BRIDGE_WORKER...) or reads
// itself.
func checkRunnerEnv(env []string) error {
	for _, kv := range env {
		key, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok || key == "":
			return usageError(fmt.Sprintf("--env %q: want KEY=VALUE, e.g. --env DJANGO_SETTINGS_MODULE=site.settings", kv))
		case strings.ContainsAny(kv, "\x00") || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r > '~' }):
			return usageError(fmt.Sprintf("--env %q: the name must be printable ASCII without spaces, and no NUL anywhere", kv))
		case strings.HasPrefix(key, "BRIDGE_"):
			return usageError(fmt.Sprintf("--env %q: BRIDGE_* names are bridge's own settings, not the app's", kv))
		}
	}
	return nil
}

// untrustedCacheWarning is the one log line saying that the shared shim
// cache was passed over, and why.
func untrustedCacheWarning(ev *zerolog.Event, err error, dir string) {
	ev.Err(err).Str("shim_dir", dir).
		Msg("shim cache not trusted: the runner's shim is extracted to a private directory instead; remove the cache or set BRIDGE_CACHE_DIR to a directory only bridge's user can write")
}

// shimPlace says what to do when the shared shim cache is not trusted.
type shimPlace struct {
	warn   func(err error, privateDir string)
	onExit func(func()) // nil: the private directory is left behind
}

// RunnerCommand is the command that starts one runner for spec in dir
// (empty: the working directory), as bridge serve starts it; interpreter
// is --interpreter (empty: found as bridge finds it). bench/slotload
// starts its runner with it too. A private shim directory it may have to
// make (runners.ExtractShimPrivate) is left behind.
func RunnerCommand(ctx context.Context, spec runners.Spec, dir, interpreter, logLevel string) (supervise.Command, error) {
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	return runnerCommandWith(ctx, spec, dir, interpreter, logLevel, nil, shimPlace{
		warn: func(err error, dir string) { untrustedCacheWarning(log.Warn(), err, dir) },
	})
}

// runnerCommandWith builds the command; extra (--env) comes first in its
// environment, so that bridge's own entries win, except that the language's
// module path from extra follows the shim's instead of replacing it.
func runnerCommandWith(ctx context.Context, spec runners.Spec, dir, interpreter, logLevel string, extra []string, place shimPlace) (supervise.Command, error) {
	given := dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return supervise.Command{}, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return supervise.Command{}, fmt.Errorf("--chdir %s: not a directory", given)
	}
	// The shims read their log threshold from the environment: --log-level
	// (flag, env or config) is what they get.
	env := append(slices.Clip(extra), "BRIDGE_LOG_LEVEL="+logLevel)
	if spec.Language == "exec" {
		return supervise.Command{Path: spec.Command[0], Args: spec.Command[1:], Dir: dir, Env: env}, nil
	}
	lang := runners.Languages[spec.Language]
	interp, err := runners.FindInterpreter(ctx, lang, interpreter)
	if err != nil {
		return supervise.Command{}, err
	}
	shimDir, err := runners.ExtractShim(lang.Shim, runners.ShimCacheDir())
	if errors.Is(err, runners.ErrUntrustedCache) {
		// Never run what someone else may have written; nor refuse to
		// start because someone made a directory in /tmp.
		untrusted := err
		if shimDir, err = runners.ExtractShimPrivate(lang.Shim); err == nil {
			if place.onExit != nil {
				private := shimDir
				place.onExit(func() { os.RemoveAll(private) })
			}
			place.warn(untrusted, shimDir)
		}
	}
	if err != nil {
		return supervise.Command{}, err
	}
	path := shimDir
	old := os.Getenv(lang.PathEnv)
	for _, kv := range extra {
		if v, ok := strings.CutPrefix(kv, lang.PathEnv+"="); ok {
			old = v // the last one wins, as in any environment
		}
	}
	if old != "" {
		path += string(os.PathListSeparator) + old
	}
	return supervise.Command{
		Path: interp,
		Args: lang.Args(shimDir, spec.App),
		Dir:  dir,
		Env:  append(env, lang.PathEnv+"="+path),
	}, nil
}

func newLogger(o *options, stderr io.Writer) (zerolog.Logger, error) {
	log, err := logx.New(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return log, usageError(err.Error())
	}
	return log, nil
}

func parseFlags(name string, o *options, serve bool, args []string, stderr io.Writer) error {
	fs := newFlagSet(name, o, serve, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bridge %s --runner SPEC [flags]\n       bridge %s --config FILE [flags]\n\nFlags:\n", name, name)
		fs.PrintDefaults()
	}
	// The environment and a config file may hold any of serve's settings,
	// also for check: it reads the same deployment settings serve would.
	all := fs
	if !serve {
		all = newFlagSet(name, o, true, io.Discard)
	}
	err := parse(fs, all, args)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		var ue *usageErr
		if !errors.As(err, &ue) {
			return usageError(err.Error()) // already printed with usage by flag
		}
		return err
	}
	return nil
}
