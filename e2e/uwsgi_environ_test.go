package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file checks that the environ bridge gives an app differs from the one
// uWSGI 2.0.21 gives only where docs/environ-vs-uwsgi.md says so. Both run
// the same env-dump app (testdata/apps/envdump) behind the same nginx with
// Debian's stock uwsgi_params; the same raw requests go to both, and the
// two dumps are compared key by key.

const uwsgiBin = "/usr/bin/uwsgi"

// envLang is one language: how uWSGI and bridge load the env-dump app.
type envLang struct {
	name      string
	plugin    string   // uwsgi --plugin NAME (Debian's uwsgi-plugin-* package)
	pkg       string   // the Debian package that has the plugin
	uwsgiArgs []string // how uWSGI loads the app, relative to --chdir
	spec      string   // bridge --runner
	modifier1 int      // uwsgi_modifier1 in both nginx servers (uWSGI routes by it)
}

var envLangs = []envLang{
	{name: "python", plugin: "python3", pkg: "uwsgi-plugin-python3",
		uwsgiArgs: []string{"--wsgi-file", "app.py", "--callable", "application"},
		spec:      "python:app:application", modifier1: 0},
	{name: "perl", plugin: "psgi", pkg: "uwsgi-plugin-psgi",
		uwsgiArgs: []string{"--psgi", "app.psgi"}, spec: "perl:app.psgi", modifier1: 5},
	{name: "ruby", plugin: "rack_ruby31", pkg: "uwsgi-plugin-rack-ruby3.1",
		uwsgiArgs: []string{"--rack", "config.ru"}, spec: "ruby:config.ru", modifier1: 7},
}

// envCase is one raw request. head is the request line and header lines
// without the final CRLF CRLF; the test adds the X-Envdump-Token header that
// names the dump file, so that HEAD requests can be compared too.
type envCase struct {
	name  string
	head  []string
	body  string
	noApp int // nginx answers this status itself: the app is never called
}

func rawGet(target string, hdr ...string) []string {
	return append([]string{"GET " + target + " HTTP/1.1", "Host: 127.0.0.1"}, hdr...)
}

// envCases are the requests both servers get: each one probes a place where
// two servers could build the environ differently.
var envCases = []envCase{
	{name: "root", head: rawGet("/")},
	{name: "path_and_query", head: rawGet("/a/b?x=1&y=2")},
	{name: "percent_encoded_utf8_path", head: rawGet("/caf%C3%A9/a%20b")},
	{name: "encoded_slash", head: rawGet("/a%2Fb/c")},
	{name: "double_encoded", head: rawGet("/foo/bar%252cbaz")},
	{name: "odd_encoded_bytes", head: rawGet("/odd%01%1F%7F%FF%22%5C%3F%23")},
	{name: "raw_utf8_path", head: rawGet("/caf\xc3\xa9/x")},
	{name: "raw_latin1_path_and_query", head: rawGet("/caf\xe9?q=\xe9")},
	{name: "query_with_question_and_percent", head: rawGet("/q?a=1?b=%&c=%2&d=%zz")},
	{name: "empty_query", head: rawGet("/e?")},
	{name: "dot_segments_double_slash", head: rawGet("/a/./b/../c//d")},
	{name: "repeated_header", head: rawGet("/h", "X-Multi: a", "X-Multi: b", "X-Multi: c")},
	{name: "repeated_cookie", head: rawGet("/c", "Cookie: a=1", "Cookie: b=2")},
	{name: "empty_header_value", head: rawGet("/h", "X-Empty:", "X-Blank:   ")},
	{name: "header_names_digits_underscore_dash", head: rawGet("/h",
		"X-Digit-9: nine", "X_Under: underscore", "X-Under: dash", "x-lower-CASE: mixed")},
	{name: "get_with_content_type", head: rawGet("/ct", "Content-Type: text/plain")},
	{name: "post_empty_content_type", head: []string{"POST /p HTTP/1.1", "Host: 127.0.0.1",
		"Content-Type:", "Content-Length: 3"}, body: "abc"},
	{name: "post_form", head: []string{"POST /p?x=1 HTTP/1.1", "Host: 127.0.0.1",
		"Content-Type: application/x-www-form-urlencoded", "Content-Length: 7"}, body: "a=1&b=2"},
	{name: "post_content_length_zero", head: []string{"POST /p HTTP/1.1", "Host: 127.0.0.1",
		"Content-Length: 0"}},
	{name: "chunked_body", head: []string{"POST /chunked HTTP/1.1", "Host: 127.0.0.1",
		"Content-Type: text/plain", "Transfer-Encoding: chunked"}, body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
	{name: "expect_100_continue", head: []string{"PUT /put HTTP/1.1", "Host: 127.0.0.1",
		"Content-Length: 4", "Expect: 100-continue"}, body: "data"},
	{name: "head", head: []string{"HEAD /head?x=1 HTTP/1.1", "Host: 127.0.0.1"}},
	{name: "options_asterisk", head: []string{"OPTIONS * HTTP/1.1", "Host: 127.0.0.1"}, noApp: 400},
	{name: "options_path", head: []string{"OPTIONS /opt HTTP/1.1", "Host: 127.0.0.1"}},
	{name: "absolute_form_target", head: []string{"GET http://example.com/abs/p?x=1 HTTP/1.1", "Host: other.example"}},
	{name: "http10_without_host", head: []string{"GET /old?v=1.0 HTTP/1.0"}},
	{name: "host_with_port", head: []string{"GET /port HTTP/1.1", "Host: example.com:8443"}},
	{name: "x_forwarded_proto_https", head: rawGet("/fwd", "X-Forwarded-Proto: https",
		"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Host: example.com")},
	{name: "long_header", head: rawGet("/long", "X-Long: "+strings.Repeat("0123456789", 600))},
	{name: "utf8_header", head: rawGet("/u", "X-Utf8: caf\xc3\xa9 \xe2\x82\xac")},
	{name: "latin1_header", head: rawGet("/l", "X-Latin: caf\xe9 \xff")},
}

// envAbsent stands for a key one server leaves out.
const envAbsent = "<absent>"

// envDiff is one key on which the two dumps of one request differ.
type envDiff struct {
	lang, request, key string
	bridge, uwsgi      string // a value, or envAbsent
}

func (d envDiff) String() string {
	return fmt.Sprintf("%s %s: %s: bridge %q, uWSGI %q", d.lang, d.request, d.key, d.bridge, d.uwsgi)
}

// knownDiff is one entry of the table of differences that are known and
// meant (docs/environ-vs-uwsgi.md has one section per entry). A difference
// matches an entry when the key matches key, the language is in langs, and
// both values match bridge and uwsgi (regexps on the whole value, or
// envAbsent); rel, when set, must also hold between the two values.
type knownDiff struct {
	key    string
	langs  []string
	bridge string
	uwsgi  string
	rel    func(bridge, uwsgi string) bool
	why    string
}

var all3 = []string{"python", "perl", "ruby"}

// knownEnvDiffs: every difference between bridge's environ and uWSGI's that
// the test accepts, measured with uWSGI 2.0.21 (Debian 12) behind nginx
// 1.22 and Debian's uwsgi_params. Each entry has a section of the same
// number in docs/environ-vs-uwsgi.md; the IDs are docs/conformance.md's.
var knownEnvDiffs = []knownDiff{
	// 1
	{key: `SCRIPT_NAME`, langs: all3, bridge: ``, uwsgi: envAbsent,
		why: "W4/P4/R3: SCRIPT_NAME is always there, '' at the root; uWSGI sets it only for a mountpoint, and uwsgi_params sends none (U7)"},
	// 2
	{key: `CONTENT_TYPE|CONTENT_LENGTH`, langs: []string{"python", "perl"}, bridge: envAbsent, uwsgi: ``,
		why: "W6/P6/U8: uwsgi_params sends both, empty, on every request without them; bridge drops an empty one, uWSGI passes it on (its Rack plugin drops it too)"},
	// 3
	{key: `HTTP_CONTENT_TYPE|HTTP_CONTENT_LENGTH`, langs: []string{"python"}, bridge: envAbsent, uwsgi: `.*`,
		why: "W6: nginx also forwards the headers as HTTP_*; bridge drops them, uWSGI's Python plugin keeps them (its PSGI and Rack plugins drop them)"},
	// 4
	{key: `HTTP_.*`, langs: []string{"python", "ruby"}, bridge: `.*(, |; ).*`, uwsgi: `.*`,
		rel: func(b, u string) bool { return strings.HasSuffix(b, ", "+u) || strings.HasSuffix(b, "; "+u) },
		why: "W8/P7/U4: nginx 1.22 sends one var per header line; bridge joins them (\", \", Cookie \"; \"), uWSGI's Python and Rack plugins keep the last line only"},
	// 5
	{key: `HTTP_COOKIE`, langs: []string{"perl"}, bridge: `.*; .*`, uwsgi: `.*, .*`,
		rel: func(b, u string) bool { return strings.ReplaceAll(b, "; ", ", ") == u },
		why: "W8/P7: a repeated Cookie is joined with \"; \" (the Cookie syntax); uWSGI's PSGI plugin joins every header with \", \""},
	// 6
	{key: `HTTP_TRANSFER_ENCODING`, langs: all3, bridge: envAbsent, uwsgi: `chunked`,
		why: "W8/U10: nginx de-chunks the body and sends CONTENT_LENGTH but still forwards Transfer-Encoding; the app's input is not chunked, so bridge drops it"},
	// 7
	{key: `HTTP_.*`, langs: []string{"ruby"}, bridge: ``, uwsgi: envAbsent,
		why: "U3/W8: an empty header value is still a header; uWSGI's Rack plugin leaves out every empty value"},
	// 8
	{key: `(wsgi|psgi|rack)\.url_scheme`, langs: all3, bridge: `http`, uwsgi: `https`,
		why: "U14/U27/H2: the scheme comes from what nginx says (HTTPS, REQUEST_SCHEME); uWSGI also believes a client's X-Forwarded-Proto, which nginx passes on unchecked"},
	// 9
	{key: `PATH_INFO`, langs: []string{"ruby"}, bridge: `.*`, uwsgi: `.*`,
		rel: func(b, u string) bool { return nginxDocumentURI(unescapeDump(b)) == unescapeDump(u) },
		why: "R4/U12: Rack gets the raw, still-encoded path from REQUEST_URI (as Puma); uWSGI passes nginx's decoded, normalised PATH_INFO"},
	// 10
	{key: `rack\.version`, langs: []string{"ruby"}, bridge: `<array \[<integer 1>,<integer 3>\]>`, uwsgi: `<array \[<integer 1>,<integer 1>\]>`,
		why: "R6: bridge gives the loaded Rack's Rack::VERSION ([1,3] for Rack 2.2); uWSGI's plugin always says [1,1]"},
	// 11
	{key: `rack\.hijack\?`, langs: []string{"ruby"}, bridge: `<bool false>`, uwsgi: envAbsent,
		why: "R11: bridge says plainly that it cannot hijack (Rack 2 mode); uWSGI leaves the key out"},
	// 12
	{key: `rack\.logger`, langs: []string{"ruby"}, bridge: `<object>`, uwsgi: envAbsent,
		why: "R15: bridge gives a logger that writes structured log lines; uWSGI gives none"},
	// 13
	{key: `wsgi\.input_terminated`, langs: []string{"python"}, bridge: `<bool true>`, uwsgi: envAbsent,
		why: "W12: bridge's wsgi.input ends with a real EOF and says so; uWSGI does not set the flag"},
	// 14
	{key: `psgi\.(multiprocess|multithread|nonblocking|run_once|streaming)|psgix\.cleanup`, langs: []string{"perl"},
		bridge: `<bool (true|false)>`, uwsgi: `<number [01]>`,
		rel: func(b, u string) bool { return (b == "<bool true>") == (u == "<number 1>") },
		why: "P8/X3: bridge uses Perl's booleans (!!1, !!0); uWSGI the integers 1 and 0, with the same truth"},
	// 15
	{key: `psgix\.input\.buffered`, langs: []string{"perl"}, bridge: `<bool true>`, uwsgi: `<number 0>`,
		why: "X1: bridge reads the whole body before it calls the app, so psgi.input can seek; uWSGI reads it from the socket as the app asks"},
	// 16
	{key: `psgi\.input`, langs: []string{"perl"}, bridge: `<glob>`, uwsgi: `<object>`,
		why: "X1/P9: bridge's psgi.input is a plain file handle on the buffered body; uWSGI's a uwsgi::input object over the socket"},
	// 17
	{key: `psgix\.harakiri`, langs: []string{"perl"}, bridge: `<bool true>`, uwsgi: envAbsent,
		why: "X4: a bridge runner is a pool process Go replaces, so psgix.harakiri.commit works; uWSGI's PSGI plugin does not offer it"},
}

// envIgnored are keys left out of the comparison: their values differ by
// nature, not by choice.
var envIgnored = []struct {
	key *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`^REMOTE_PORT$`), "the client's ephemeral port: a new one per connection"},
	{regexp.MustCompile(`^uwsgi\.`), "uWSGI's own keys (uwsgi.version, uwsgi.node, uwsgi.core, ...): the server's identity, not the request's"},
	{regexp.MustCompile(`^bridge\.`), "bridge's own keys (bridge.request_id, a new id per request; bridge.retire, a callable)"},
}

// envObject matches a description of an object or callable: the class (or
// function) names are each server's own; what the objects can do (W11, W13,
// W14, P9, P10, R8, R9) is checked by the conformance tests, not here.
var envObject = regexp.MustCompile(`^<(object|callable) [^>]*>$`)

// normaliseEnv drops ignored keys and rewrites values that differ by nature.
// The process-model flags (wsgi.multithread, psgi.multiprocess,
// rack.multiprocess, ...) need no rewriting: both servers run one process
// with one thread, so they must agree.
// nginxPort is the port of the nginx server the request came through: the
// two servers listen on different ports, so SERVER_PORT differs by
// construction.
func normaliseEnv(dump map[string]string, nginxPort string) map[string]string {
	out := make(map[string]string, len(dump))
next:
	for k, v := range dump {
		for _, ig := range envIgnored {
			if ig.key.MatchString(k) {
				continue next
			}
		}
		if k == "SERVER_PORT" && v == nginxPort {
			v = "<nginx port>"
		}
		if m := envObject.FindStringSubmatch(v); m != nil {
			v = "<" + m[1] + ">"
		}
		out[k] = v
	}
	return out
}

// diffEnv lists the keys whose values differ, sorted by key.
func diffEnv(lang, request string, bridge, uwsgi map[string]string) []envDiff {
	keys := map[string]bool{}
	for k := range bridge {
		keys[k] = true
	}
	for k := range uwsgi {
		keys[k] = true
	}
	var out []envDiff
	for k := range keys {
		b, okb := bridge[k]
		u, oku := uwsgi[k]
		if !okb {
			b = envAbsent
		}
		if !oku {
			u = envAbsent
		}
		if okb == oku && b == u {
			continue
		}
		out = append(out, envDiff{lang: lang, request: request, key: k, bridge: b, uwsgi: u})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// compiledDiff is a knownDiff with its regexps compiled.
type compiledDiff struct {
	knownDiff
	key, bridge, uwsgi *regexp.Regexp
}

func compileKnown(t *testing.T) []compiledDiff {
	t.Helper()
	re := func(s string) *regexp.Regexp {
		if s == envAbsent {
			return regexp.MustCompile("^" + regexp.QuoteMeta(envAbsent) + "$")
		}
		return regexp.MustCompile("^(?:" + s + ")$")
	}
	out := make([]compiledDiff, len(knownEnvDiffs))
	for i, k := range knownEnvDiffs {
		out[i] = compiledDiff{knownDiff: k, key: re(k.key), bridge: re(k.bridge), uwsgi: re(k.uwsgi)}
	}
	return out
}

func (c compiledDiff) matches(d envDiff) bool {
	inLang := false
	for _, l := range c.langs {
		inLang = inLang || l == d.lang
	}
	return inLang && c.key.MatchString(d.key) && c.bridge.MatchString(d.bridge) && c.uwsgi.MatchString(d.uwsgi) &&
		(c.rel == nil || c.rel(d.bridge, d.uwsgi))
}

// requireUwsgi fails (never skips) when uWSGI or a plugin is missing: the
// comparison is part of the suite on every machine, `make deps` installs it.
func requireUwsgi(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(uwsgiBin); err != nil {
		t.Fatalf("uWSGI not installed (%v): run `make deps` (apt-get install uwsgi)", err)
	}
	for _, l := range envLangs {
		so := "/usr/lib/uwsgi/plugins/" + l.plugin + "_plugin.so"
		if _, err := os.Stat(so); err != nil {
			t.Fatalf("uWSGI plugin %s missing (%v): run `make deps` (apt-get install %s)", l.plugin, err, l.pkg)
		}
	}
}

// uwsgiProc is a private uWSGI: one process (no master), its own socket.
type uwsgiProc struct {
	cmd     *exec.Cmd
	log     *logBuffer
	sock    string
	done    chan struct{}
	waitErr error
}

// startUwsgi runs the env-dump app of lang under uWSGI on a unix socket.
func startUwsgi(t *testing.T, l envLang, dumpDir string) *uwsgiProc {
	t.Helper()
	u := &uwsgiProc{log: &logBuffer{}, sock: filepath.Join(shortTempDir(t), "uwsgi.sock"), done: make(chan struct{})}
	args := []string{"--plugin", l.plugin, "--socket", u.sock, "--chdir", appDir("envdump"),
		"--processes", "1", "--need-app",
		// uWSGI's default buffer-size (4096) turns away a request whose
		// vars exceed 4 KiB (long_header); 64 KiB is the packet's own limit
		// (U25), as for bridge.
		"--buffer-size", "65535"}
	args = append(args, l.uwsgiArgs...)
	u.cmd = exec.Command(uwsgiBin, args...)
	u.cmd.Env = append(os.Environ(), "ENVDUMP_DIR="+dumpDir)
	u.cmd.Stdout, u.cmd.Stderr = u.log, u.log
	if err := u.cmd.Start(); err != nil {
		t.Fatalf("start uWSGI: %v", err)
	}
	go func() {
		u.waitErr = u.cmd.Wait()
		close(u.done)
	}()
	t.Cleanup(func() { u.stop(t) })
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-u.done:
			t.Fatalf("uWSGI (%s) exited at start (%v):\n%s", l.name, u.waitErr, u.log.tail(40))
		default:
		}
		if strings.Contains(u.log.String(), "spawned uWSGI worker 1") {
			if c, err := net.DialTimeout("unix", u.sock, time.Second); err == nil {
				c.Close()
				return u
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("uWSGI (%s) not ready after %v:\n%s", l.name, startTimeout, u.log.tail(40))
		}
		time.Sleep(pollEvery)
	}
}

// stop ends uWSGI by its pid: SIGINT makes a worker without a master exit
// at once.
func (u *uwsgiProc) stop(t *testing.T) {
	select {
	case <-u.done:
		t.Errorf("uWSGI exited during the test (%v):\n%s", u.waitErr, u.log.tail(40))
		return
	default:
	}
	_ = u.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-u.done:
	case <-time.After(stopTimeout):
		_ = u.cmd.Process.Kill()
		<-u.done
		t.Errorf("uWSGI did not exit within %v of SIGINT (killed)", stopTimeout)
	}
	if t.Failed() {
		t.Logf("uWSGI log (last 40 lines):\n%s", u.log.tail(40))
	}
}

// envServer is one of the two sides for a language: the nginx server that
// leads to it and where its app writes dumps.
type envServer struct {
	name    string // "bridge" or "uWSGI"
	sock    string
	nginx   string // host:port of its nginx server
	dumpDir string
}

// startEnvNginx starts one nginx with a server per side: each includes the
// stock uwsgi_params and differs from the other only in uwsgi_pass.
func startEnvNginx(t *testing.T, l envLang, servers []*envServer) *nginxProc {
	t.Helper()
	n := newNginx(t)
	var blocks strings.Builder
	var addrs []string
	for _, s := range servers {
		s.nginx = freeAddr(t)
		addrs = append(addrs, s.nginx)
		fmt.Fprintf(&blocks, "    server {\n        listen %s;\n        server_name 127.0.0.1;\n"+
			"        location / {\n            include %s;\n            uwsgi_modifier1 %d;\n"+
			"            uwsgi_pass unix:%s;\n        }\n    }\n", s.nginx, uwsgiParams, l.modifier1, s.sock)
	}
	n.run(t, blocks.String(), addrs)
	return n
}

// sendRaw writes one request as raw bytes and reads the final response
// (after any 100 Continue). It returns the status code.
func sendRaw(t *testing.T, addr string, c envCase, token string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var req bytes.Buffer
	for _, line := range c.head {
		req.WriteString(line + "\r\n")
	}
	req.WriteString("X-Envdump-Token: " + token + "\r\n\r\n" + c.body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatalf("%s: write: %v", c.name, err)
	}
	method, _, _ := strings.Cut(c.head[0], " ")
	br := bufio.NewReader(conn)
	for range 3 {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s via %s: reading the response: %v", c.name, addr, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s via %s: reading the body: %v", c.name, addr, err)
		}
		if resp.StatusCode >= 200 {
			return resp.StatusCode
		}
	}
	t.Fatalf("%s via %s: no final response after three 1xx", c.name, addr)
	return 0
}

// readDump loads the dump the app wrote for token, or nil if there is none.
func readDump(t *testing.T, dir, token string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, token+".json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("dump %s: %v\n%s", token, err, b)
	}
	return m
}

// TestEnvironMatchesUwsgi sends the same raw requests through one nginx to
// bridge and to uWSGI 2.0.21, both running testdata/apps/envdump, for
// Python, Perl and Ruby, and fails on any environ difference that is not in
// knownEnvDiffs, and on any knownEnvDiffs entry that no longer matches a
// difference (docs/environ-vs-uwsgi.md is kept true by this test).
func TestEnvironMatchesUwsgi(t *testing.T) {
	trackSources()
	requireUwsgi(t)
	known := compileKnown(t)
	used := make([]int, len(known))
	var mu sync.Mutex
	compared := map[string]bool{} // languages whose requests all ran
	t.Run("lang", func(t *testing.T) {
		for _, l := range envLangs {
			t.Run(l.name, func(t *testing.T) {
				t.Parallel()
				diffs := compareEnvirons(t, l)
				mu.Lock()
				compared[l.name] = true
				mu.Unlock()
				for _, d := range diffs {
					mu.Lock()
					hit := -1
					for i, k := range known {
						if k.matches(d) {
							used[i]++
							hit = i
							break
						}
					}
					mu.Unlock()
					if hit < 0 {
						t.Errorf("difference not in knownEnvDiffs (add an entry and a section of docs/environ-vs-uwsgi.md, or fix bridge):\n    %s", d)
					} else if testing.Verbose() {
						t.Logf("known [%d]: %s (%s)", hit, d, known[hit].why)
					}
				}
			})
		}
	})
	for i, k := range known {
		ran := true
		for _, l := range k.langs {
			ran = ran && compared[l]
		}
		// A language that stopped early (its servers did not start) has
		// already failed; its entries are not reported as unused.
		if used[i] == 0 && ran {
			t.Errorf("knownEnvDiffs[%d] (key %s, %v: bridge %s, uWSGI %s) matched no difference: "+
				"remove it and its section of docs/environ-vs-uwsgi.md", i, k.knownDiff.key, k.langs, k.knownDiff.bridge, k.knownDiff.uwsgi)
		}
	}
}

// compareEnvirons runs bridge and uWSGI for one language behind one nginx,
// sends every envCase to both and returns the differences left after
// normalising.
func compareEnvirons(t *testing.T, l envLang) []envDiff {
	b := &envServer{name: "bridge", dumpDir: shortTempDir(t)}
	u := &envServer{name: "uWSGI", dumpDir: shortTempDir(t)}
	// One worker, one thread on both sides, so the process-model flags
	// (wsgi.multithread, psgi.multiprocess, ...) mean the same thing.
	bp := startBridge(t, bridgeOpts{app: "envdump", spec: l.spec, uwsgiUnix: true,
		workers: 1, threads: 1, env: []string{"ENVDUMP_DIR=" + b.dumpDir}})
	b.sock = bp.uwsgiSock
	u.sock = startUwsgi(t, l, u.dumpDir).sock
	startEnvNginx(t, l, []*envServer{b, u})

	var diffs []envDiff
	for _, c := range envCases {
		token := l.name + "-" + c.name
		var dumps [2]map[string]string
		var status [2]int
		for i, s := range []*envServer{b, u} {
			status[i] = sendRaw(t, s.nginx, c, token)
			if d := readDump(t, s.dumpDir, token); d != nil {
				dumps[i] = normaliseEnv(d, portOf(s.nginx))
			}
		}
		switch {
		case c.noApp != 0:
			if dumps[0] != nil || dumps[1] != nil || status[0] != c.noApp || status[1] != c.noApp {
				t.Errorf("%s: want nginx to answer %d without calling the app; bridge %d (app called: %v), uWSGI %d (app called: %v)",
					c.name, c.noApp, status[0], dumps[0] != nil, status[1], dumps[1] != nil)
			}
			continue
		case dumps[0] == nil || dumps[1] == nil:
			t.Errorf("%s: no dump from the app: bridge status %d (dump %v), uWSGI status %d (dump %v)",
				c.name, status[0], dumps[0] != nil, status[1], dumps[1] != nil)
			continue
		case status[0] != status[1]:
			t.Errorf("%s: status bridge %d, uWSGI %d", c.name, status[0], status[1])
		}
		diffs = append(diffs, diffEnv(l.name, c.name, dumps[0], dumps[1])...)
	}
	return diffs
}

// portOf is the port of host:port.
func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// nginxDocumentURI is what nginx makes of a raw request path for PATH_INFO
// ($document_uri, U12): %XX decoded once (%2F too), slashes merged,
// dot-segments resolved, a trailing slash kept.
func nginxDocumentURI(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if c, ok := hexByte(raw, i+1); raw[i] == '%' && ok {
			b.WriteByte(c)
			i += 2
			continue
		}
		b.WriteByte(raw[i])
	}
	dec := b.String()
	clean := path.Clean(dec)
	if strings.HasSuffix(dec, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

// hexByte decodes the two hex digits at s[i:], if that is what is there.
func hexByte(s string, i int) (byte, bool) {
	if i+2 > len(s) {
		return 0, false
	}
	b, err := hex.DecodeString(s[i : i+2])
	if err != nil {
		return 0, false
	}
	return b[0], true
}

// unescapeDump turns a dumped string back into its bytes (the apps write
// bytes outside 0x20-0x7e, and backslash, as \xHH).
func unescapeDump(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c, ok := hexByte(s, i+2); s[i] == '\\' && i+1 < len(s) && s[i+1] == 'x' && ok {
			b.WriteByte(c)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
