package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeRunnerDir is the example Node.js runner, started with
// --runner 'exec:node …/runner.js APP'.
func nodeRunnerDir() string {
	return filepath.Join(repoRoot, "examples", "runners", "node")
}

// requireNodeExpress fails the test (never skips) when node or the
// runner's npm dependencies (express among its devDependencies) are missing.
func requireNodeExpress(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not installed: run `make node-deps` (apt-get install nodejs npm)")
	}
	for _, dep := range []string{"@grpc/grpc-js", "express"} {
		if _, err := os.Stat(filepath.Join(nodeRunnerDir(), "node_modules", dep, "package.json")); err != nil {
			t.Fatalf("%s missing from examples/runners/node/node_modules: run `make node-deps` (npm ci in examples/runners/node)", dep)
		}
	}
	return node
}

// startNodeFixture serves APP (a file in examples/runners/node/test/apps)
// with the Node runner behind nginx: uwsgi_pass over a unix socket with
// the stock uwsgi_params, and over TCP with uwsgi_buffering off.
func startNodeFixture(t *testing.T, app string) (buffered, unbuffered front, b *bridgeProc) {
	t.Helper()
	node := requireNodeExpress(t)
	spec := "exec:" + node + " " + filepath.Join(nodeRunnerDir(), "runner.js") + " " + app
	b = startBridge(t, bridgeOpts{
		dir: filepath.Join(nodeRunnerDir(), "test", "apps"), spec: spec,
		http: true, uwsgiUnix: true, uwsgiTCP: true, workers: 2, threads: 4,
	})
	n := startNginx(t, nginxUpstreams{uwsgiSock: b.uwsgiSock, uwsgiTCP: b.uwsgiTCP})
	buffered = front{name: "nginx-uwsgi-unix", base: "http://" + n.uwsgiUnix, uwsgi: true}
	unbuffered = front{name: "nginx-uwsgi-tcp", base: "http://" + n.uwsgiTCP, uwsgi: true, unbuffered: true, abortVisible: true}
	return buffered, unbuffered, b
}

// TestNodeExpress runs a real Express app (examples/runners/node/test/apps/
// express_app.js) in the example Node.js runner behind nginx → uwsgi: JSON,
// a JSON body through express.json(), 404, a streamed response, a file sent
// by bridge (res.sendFile becomes a file frame) and Express's own 500 page.
func TestNodeExpress(t *testing.T) {
	buffered, unbuffered, b := startNodeFixture(t, "express_app.js")
	fronts := []front{buffered, unbuffered}

	t.Run("json", func(t *testing.T) {
		forFronts(t, fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/api/hello?name=e2e")
			var got struct {
				Hello, RequestID, Protocol, IP string
			}
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
				t.Fatalf("GET /api/hello: %d %q (%v)", r.status, r.body, err)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if got.Hello != "e2e" || got.Protocol != "http" || got.IP != "127.0.0.1" {
				t.Errorf("got %+v, want hello e2e, protocol http, ip 127.0.0.1", got)
			}
			if got.RequestID != r.reqID {
				t.Errorf("req.bridge.requestId %q, want the X-Request-Id sent, %q", got.RequestID, r.reqID)
			}
		})
	})

	t.Run("post_json_body", func(t *testing.T) {
		forFronts(t, fronts, nil, func(t *testing.T, f front) {
			r := request(t, f, http.MethodPost, "/api/items", []byte(`{"name":"widget","tags":["a","b"]}`),
				http.Header{"Content-Type": {"application/json"}})
			r.expect(t, 201, `{"created":"widget","tags":["a","b"],"contentType":"application/json"}`)
			bad := request(t, f, http.MethodPost, "/api/items", []byte(`{}`), http.Header{"Content-Type": {"application/json"}})
			bad.expect(t, 400, `{"error":"name is required"}`)
		})
	})

	t.Run("not_found", func(t *testing.T) {
		forFronts(t, fronts, nil, func(t *testing.T, f front) {
			get(t, f, "/no/such/page").expect(t, 404, "no route for GET /no/such/page")
		})
	})

	t.Run("error_page", func(t *testing.T) {
		forFronts(t, fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/boom")
			if r.status != 500 {
				t.Errorf("GET /boom: %d, want Express's 500", r.status)
			}
		})
	})

	t.Run("static_file", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(nodeRunnerDir(), "test", "apps", "static.txt"))
		if err != nil {
			t.Fatal(err)
		}
		forFronts(t, fronts, nil, func(t *testing.T, f front) {
			get(t, f, "/static").expect(t, 200, string(want))
		})
	})

	t.Run("streamed", func(t *testing.T) {
		// Through the unbuffered front each tick reaches the client as the
		// app writes it: the first well before the last.
		s := getStream(t, unbuffered, "/stream?n=3&ms=400")
		want := []string{"tick 1\n", "tick 2\n", "tick 3\n"}
		if strings.Join(s.lines, "") != strings.Join(want, "") {
			t.Fatalf("lines %q, want %q", s.lines, want)
		}
		if gap := s.at[2] - s.at[0]; gap < 500*time.Millisecond {
			t.Errorf("tick 3 arrived %v after tick 1, want ≥ 500ms (streamed, not buffered): at %v", gap, s.at)
		}
		if s.resp.Header.Get("X-Accel-Buffering") != "" {
			t.Logf("X-Accel-Buffering reached the client: %q", s.resp.Header.Get("X-Accel-Buffering"))
		}
		// and whole through the buffered one
		get(t, buffered, "/stream?n=3&ms=50").expect(t, 200, "tick 1\ntick 2\ntick 3\n")
	})

	if t.Failed() {
		t.Logf("bridge log:\n%s", b.log.tail(40))
	}
}

// TestNodePlainListener: a plain (req, res) listener sees the request as
// nginx sent it, with the uwsgi variables mapped to Node's request object.
func TestNodePlainListener(t *testing.T) {
	buffered, _, b := startNodeFixture(t, "plain.js")
	r := request(t, buffered, http.MethodGet, "/info?x=1&y=%20", nil, http.Header{"X-Custom": {"a", "b"}})
	var got struct {
		Method, URL, HTTPVersion, RemoteAddress, RequestID string
		Headers                                            map[string]any
		IsIncomingMessage                                  bool
	}
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
		t.Fatalf("GET /info: %d %q (%v)\n%s", r.status, r.body, err, b.log.tail(20))
	}
	if got.Method != "GET" || got.URL != "/info?x=1&y=%20" || got.HTTPVersion != "1.1" || got.RemoteAddress != "127.0.0.1" {
		t.Errorf("request: %+v", got)
	}
	if !got.IsIncomingMessage || got.RequestID != r.reqID {
		t.Errorf("req is IncomingMessage %v, requestId %q (want %q)", got.IsIncomingMessage, got.RequestID, r.reqID)
	}
	if got.Headers["x-custom"] != "a, b" || !strings.HasPrefix(got.Headers["host"].(string), "127.0.0.1") {
		t.Errorf("headers: %v", got.Headers)
	}
	if cookies := r.header.Values("Set-Cookie"); strings.Join(cookies, ";") != "a=1;b=2" {
		t.Errorf("Set-Cookie %q, want a=1 and b=2", cookies)
	}
	// A file range piped from fs.createReadStream, sent by bridge.
	get(t, buffered, "/file-range").expect(t, 200, "file")
}
