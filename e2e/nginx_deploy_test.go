package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deployVars are what a test changes in a deploy/nginx file: addresses and
// paths, nothing else.
type deployVars struct {
	listen    string // 127.0.0.1:PORT nginx listens on
	uwsgiSock string // bridge's uwsgi unix socket (bridge-uwsgi.conf)
	httpAddr  string // bridge's HTTP listener, host:port (bridge-http.conf)
	staticDir string // the /static/ alias root
}

// deployServer reads deploy/nginx/NAME as a user would copy it and makes
// exactly these replacements, each of which must match:
//
//	"listen 80;"                  → "listen 127.0.0.1:PORT;"
//	"unix:/run/bridge/uwsgi.sock" → "unix:" + the test bridge's socket
//	"unix:/run/bridge/http.sock"  → the test bridge's 127.0.0.1:PORT
//	"alias /srv/app/static/;"     → "alias " + a temp dir + "/;"
//
// `include uwsgi_params;` stays: newNginx puts Debian's uwsgi_params next to
// the test's nginx.conf. A deploy file that no longer contains a string
// fails the test, so the file and this template cannot drift apart.
func deployServer(t *testing.T, name string, v deployVars) string {
	t.Helper()
	path := filepath.Join(repoRoot, "deploy", "nginx", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the deploy file: %v", err)
	}
	conf := string(b)
	replace := func(old, new string) {
		if !strings.Contains(conf, old) {
			t.Fatalf("%s no longer contains %q, which the e2e template replaces (e2e/nginx_deploy_test.go)", path, old)
		}
		conf = strings.ReplaceAll(conf, old, new)
	}
	replace("listen 80;", "listen "+v.listen+";")
	replace("alias /srv/app/static/;", "alias "+strings.TrimSuffix(v.staticDir, "/")+"/;")
	switch {
	case v.uwsgiSock != "":
		replace("unix:/run/bridge/uwsgi.sock", "unix:"+v.uwsgiSock)
	case v.httpAddr != "":
		replace("unix:/run/bridge/http.sock", v.httpAddr)
	default:
		t.Fatalf("deployServer %s: no upstream given", name)
	}
	return conf
}

// TestNginxDeployConfigs checks what deploy/nginx/bridge-uwsgi.conf and
// bridge-http.conf add beyond passing requests (which every fixture test
// does through them): /static/ served by nginx without reaching bridge, a
// response with X-Accel-Buffering: no passed on piece by piece, a body
// over client_max_body_size refused by nginx with 413, an upload held by
// nginx until it is whole (request buffering), the Host and forwarded
// headers and kept-alive upstream connections of the proxy_pass file, and
// the file's uwsgi_modifier1 lines for PSGI (5) and Rack (7).
func TestNginxDeployConfigs(t *testing.T) {
	state := shortTempDir(t)
	b := startBridge(t, bridgeOpts{app: "nginx_deploy", spec: "python:app:application",
		http: true, uwsgiUnix: true, admin: true, workers: 1, threads: 4, env: []string{"E2E_STATE_DIR=" + state}})
	n := startNginx(t, nginxUpstreams{uwsgiSock: b.uwsgiSock, http: b.httpAddr})
	const static = "body { color: teal }\n"
	if err := os.WriteFile(filepath.Join(n.staticDir, "site.css"), []byte(static), 0o644); err != nil {
		t.Fatal(err)
	}
	fronts := []front{
		{name: "bridge-uwsgi.conf", base: "http://" + n.uwsgiUnix, uwsgi: true},
		{name: "bridge-http.conf", base: "http://" + n.proxy},
	}
	forFronts(t, fronts, nil, func(t *testing.T, f front) {
		if r := get(t, f, "/static/site.css"); r.status != 200 || string(r.body) != static {
			t.Errorf("GET /static/site.css: %d %q, want 200 and the file (the app answers %q)", r.status, r.body, "from the app")
		}
		if r := get(t, f, "/static/missing.css"); r.status != 404 {
			t.Errorf("GET /static/missing.css: %d %q, want nginx's 404 (the app would answer 200)", r.status, r.body)
		}
		if r := get(t, f, "/elsewhere"); r.status != 200 || string(r.body) != "from the app\n" {
			t.Errorf("GET /elsewhere: %d %q, want the app's answer", r.status, r.body)
		}
		checkGatedStream(t, f, state)
		checkBodyLimit(t, f)
	})
	// One after the other: each watches nginx's shared temp directory.
	for _, f := range fronts {
		t.Run(f.name+"/request-buffering", func(t *testing.T) { checkRequestBuffering(t, f, n, b) })
	}

	t.Run("http-forwarded-and-keepalive", func(t *testing.T) {
		f := fronts[1]
		first := get(t, f, "/peer")
		second := get(t, f, "/peer")
		for _, want := range []string{"HTTP_X_FORWARDED_FOR=127.0.0.1", "HTTP_X_FORWARDED_PROTO=http", "HTTP_HOST=" + n.proxy} {
			if !strings.Contains(string(first.body), want) {
				t.Errorf("GET /peer: %q lacks %s", first.body, want)
			}
		}
		// One nginx worker, requests one after the other: with the
		// upstream's keepalive both come on the same connection to bridge,
		// so from the same port.
		if strings.Contains(string(first.body), "REMOTE_PORT= ") {
			t.Fatalf("GET /peer: %q: no REMOTE_PORT to compare", first.body)
		}
		if string(first.body) != string(second.body) {
			t.Errorf("two requests reached bridge from different connections (keepalive not in effect):\n  %s  %s", first.body, second.body)
		}
	})

	t.Run("modifier1", func(t *testing.T) {
		for _, c := range []struct{ name, spec, modifier1, want string }{
			{"psgi", "perl:app.psgi", "5", "psgi /hi\n"},
			{"rack", "ruby:config.ru", "7", "rack /hi\n"},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				b := startBridge(t, bridgeOpts{app: "nginx_deploy", spec: c.spec, uwsgiUnix: true, workers: 1, threads: 1})
				n := newNginx(t)
				addr := freeAddr(t)
				conf := deployServer(t, "bridge-uwsgi.conf", deployVars{listen: addr, uwsgiSock: b.uwsgiSock, staticDir: n.staticDir})
				// The file shows the line commented out; turn it on as a
				// user coming from uWSGI would.
				line := "# uwsgi_modifier1 " + c.modifier1 + ";"
				if !strings.Contains(conf, line) {
					t.Fatalf("deploy/nginx/bridge-uwsgi.conf no longer shows %q", line)
				}
				n.run(t, strings.Replace(conf, line, line[2:], 1), []string{addr})
				r := get(t, front{name: c.name, base: "http://" + addr, uwsgi: true}, "/hi")
				if r.status != 200 || string(r.body) != c.want {
					t.Errorf("GET /hi with uwsgi_modifier1 %s: %d %q, want 200 %q", c.modifier1, r.status, r.body, c.want)
				}
			})
		}
	})
}

// checkGatedStream reads the first line of /gated-stream before opening
// the gate the app waits on for its second: if nginx held the response
// back, the first line would only come after the app gave up (20 s) and the
// second would say so. The client's own timeout only detects a hang.
func checkGatedStream(t *testing.T, f front, state string) {
	t.Helper()
	token := newID(t, "gate")
	req := newRequest(t, f, http.MethodGet, "/gated-stream?token="+token, nil, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /gated-stream: %v", err)
	}
	defer resp.Body.Close()
	if v := resp.Header.Get("X-Accel-Buffering"); v != "" {
		t.Errorf("X-Accel-Buffering %q reached the client: nginx should consume it", v)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first line: %q (%v)", first, err)
	}
	if err := os.WriteFile(filepath.Join(state, token), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := br.ReadString('\n')
	if second != "second\n" {
		t.Errorf("second line: %q (%v), want %q: the first piece was held back until the app gave up", second, err, "second\n")
	}
}

// checkBodyLimit sends a head announcing one byte more than the deploy
// files' client_max_body_size (100m, bridge's --max-body-size in
// deploy/bridge.yaml) and no body: nginx must answer 413 at once, while
// bridge (whose limit in this test is the 1G default) would have waited
// for the body. A small body passes.
func checkBodyLimit(t *testing.T, f front) {
	t.Helper()
	addr := strings.TrimPrefix(f.base, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	const head = "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n" +
		"Content-Length: 104857601\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodPost})
	if err != nil {
		t.Fatalf("POST of 100 MiB + 1 byte: no response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST of 100 MiB + 1 byte: %s, want 413 from nginx", resp.Status)
	}
	r := request(t, f, http.MethodPost, "/upload", bytes.Repeat([]byte("x"), 300_000), nil)
	if r.status != 200 || string(r.body) != "300000\n" {
		t.Errorf("POST of 300000 bytes: %d %q, want 200 %q", r.status, r.body, "300000\n")
	}
}

// checkRequestBuffering sends half of a 256 KiB body and stops: nginx, with
// request buffering on, spools what it has into a temp file (and logs so)
// and has not yet connected to bridge, so bridge counts no request in
// flight (it counts one from its first byte). Then the rest goes and the
// app gets the whole body. Without request buffering there would be no
// temp file and the wait for its log line fails the test.
func checkRequestBuffering(t *testing.T, f front, n *nginxProc, b *bridgeProc) {
	const size = 256 << 10
	addr := strings.TrimPrefix(f.base, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n", size)
	const spooled = "a client request body is buffered to a temporary file"
	before := strings.Count(n.errorLogText(), spooled)
	half := bytes.Repeat([]byte("x"), size/2)
	if _, err := conn.Write(append([]byte(head), half...)); err != nil {
		t.Fatal(err)
	}
	// nginx unlinks its temp file at once, but logs that it made one.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(n.errorLogText(), spooled) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not log %q within 10s: is request buffering off?", spooled)
		}
		time.Sleep(pollEvery)
	}
	if got := inFlight(t, b); got != 0 {
		t.Errorf("bridge has %v requests in flight while nginx still reads the body: want 0 (nginx buffers the request)", got)
	}
	if _, err := conn.Write(half); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodPost})
	if err != nil {
		t.Fatalf("no response after the whole body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != fmt.Sprintf("%d\n", size) {
		t.Errorf("POST of %d bytes: %s %q", size, resp.Status, body)
	}
}

// inFlight reads bridge_requests_in_flight from bridge's /metrics.
func inFlight(t *testing.T, b *bridgeProc) float64 {
	t.Helper()
	_, text := adminGet(t, b, "/metrics")
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "bridge_requests_in_flight "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("bridge_requests_in_flight %q: %v", v, err)
			}
			return f
		}
	}
	t.Fatalf("no bridge_requests_in_flight in /metrics:\n%s", text)
	return 0
}
