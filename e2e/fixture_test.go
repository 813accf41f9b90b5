package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// front is one way for a client to reach the app.
type front struct {
	name string
	base string // http://127.0.0.1:PORT
	// uwsgi: nginx talks uwsgi to bridge, so the app's reason phrase
	// reaches the client (U18); through Go's HTTP server it cannot (H18).
	uwsgi bool
	// unbuffered: nothing between bridge and the client holds chunks back,
	// so streaming timing checks apply (W23; fixture variant "stream").
	unbuffered bool
	// abortVisible: an abort after the head reaches the client as a broken
	// response. Not so for nginx→uwsgi over a unix socket without a
	// Content-Length: a close there looks like a clean end (U20).
	abortVisible bool
}

// fixture is one bridge with every front: direct HTTP, nginx→uwsgi (unix
// socket: deploy/nginx/bridge-uwsgi.conf), nginx→uwsgi (TCP, uwsgi_buffering
// off) and nginx→proxy_pass (deploy/nginx/bridge-http.conf: keepalive,
// response buffering on).
type fixture struct {
	bridge   *bridgeProc
	nginx    *nginxProc
	direct   front
	fronts   []front
	stateDir string
}

func startFixture(t *testing.T, app, spec string, workers, threads int) *fixture {
	t.Helper()
	fx := &fixture{stateDir: shortTempDir(t)}
	fx.bridge = startBridge(t, bridgeOpts{
		app: app, spec: spec, http: true, uwsgiUnix: true, uwsgiTCP: true,
		workers: workers, threads: threads, env: []string{"E2E_STATE_DIR=" + fx.stateDir},
	})
	fx.nginx = startNginx(t, nginxUpstreams{
		uwsgiSock: fx.bridge.uwsgiSock, uwsgiTCP: fx.bridge.uwsgiTCP, http: fx.bridge.httpAddr,
	})
	fx.direct = front{name: "http", base: "http://" + fx.bridge.httpAddr, unbuffered: true, abortVisible: true}
	fx.fronts = []front{
		fx.direct,
		{name: "nginx-uwsgi-unix", base: "http://" + fx.nginx.uwsgiUnix, uwsgi: true},
		{name: "nginx-uwsgi-tcp", base: "http://" + fx.nginx.uwsgiTCP, uwsgi: true, unbuffered: true, abortVisible: true},
		{name: "nginx-proxy", base: "http://" + fx.nginx.proxy, abortVisible: true},
	}
	return fx
}

// forFronts runs fn as a parallel subtest per front that passes keep (all
// fronts when keep is nil).
func forFronts(t *testing.T, fronts []front, keep func(front) bool, fn func(t *testing.T, f front)) {
	t.Helper()
	for _, f := range fronts {
		if keep != nil && !keep(f) {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			fn(t, f)
		})
	}
}

func unbuffered(f front) bool   { return f.unbuffered }
func abortVisible(f front) bool { return f.abortVisible }

// client never follows redirects, never asks for gzip (bodies are compared
// byte for byte) and uses a new connection per request.
var client = &http.Client{
	Transport: &http.Transport{
		DisableKeepAlives:     true,
		DisableCompression:    true,
		ResponseHeaderTimeout: 20 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

var seq atomic.Int64

// newID is unique in this run; it is a valid X-Request-Id and token.
func newID(t *testing.T, kind string) string {
	var b strings.Builder
	for _, c := range t.Name() {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteRune(c)
		default:
			b.WriteByte('.')
		}
	}
	name := b.String()
	if len(name) > 80 {
		name = name[len(name)-80:]
	}
	return fmt.Sprintf("%s-%s-%d", kind, name, seq.Add(1))
}

// result is a complete exchange; bodyErr is the error that ended the body
// read (nil for a complete body).
type result struct {
	status     int
	statusLine string // "200 OK"
	header     http.Header
	body       []byte
	bodyErr    error
	reqID      string
}

// request sends one request with a fresh X-Request-Id and reads the whole
// body. hdr values are sent as separate header lines.
func request(t *testing.T, f front, method, path string, body []byte, hdr http.Header) result {
	t.Helper()
	req := newRequest(t, f, method, path, body, hdr)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, path, f.name, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return result{
		status: resp.StatusCode, statusLine: resp.Status, header: resp.Header,
		body: got, bodyErr: err, reqID: req.Header.Get("X-Request-Id"),
	}
}

func newRequest(t *testing.T, f front, method, path string, body []byte, hdr http.Header) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, f.base+path, rd)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = append([]string(nil), vs...)
	}
	if req.Header.Get("X-Request-Id") == "" {
		req.Header.Set("X-Request-Id", newID(t, "req"))
	}
	return req
}

// get is request with GET and no body, asserting a complete body.
func get(t *testing.T, f front, path string) result {
	t.Helper()
	r := request(t, f, http.MethodGet, path, nil, nil)
	if r.bodyErr != nil {
		t.Fatalf("GET %s via %s: body: %v", path, f.name, r.bodyErr)
	}
	return r
}

// expect checks status and exact body.
func (r result) expect(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || string(r.body) != body || r.bodyErr != nil {
		t.Errorf("got %d %q (body error %v), want %d %q", r.status, r.body, r.bodyErr, status, body)
	}
}

// timedLines reads lines and when each arrived, counted from start.
func timedLines(r io.Reader, start time.Time) (lines []string, at []time.Duration, err error) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			lines = append(lines, line)
			at = append(at, time.Since(start))
		}
		if err == io.EOF {
			return lines, at, nil
		}
		if err != nil {
			return lines, at, err
		}
	}
}

// closeCount asks the conformance app how often close() ran for token.
func (fx *fixture) closeCount(t *testing.T, kind, token string) int {
	t.Helper()
	r := get(t, fx.direct, "/closecount?kind="+kind+"&token="+token)
	n, err := strconv.Atoi(string(r.body))
	if r.status != 200 || err != nil {
		t.Fatalf("closecount: %d %q", r.status, r.body)
	}
	return n
}

// expectClosedOnce polls (bounded) until close() ran for token, then checks
// it ran exactly once and that no second call follows within settle.
func (fx *fixture) expectClosedOnce(t *testing.T, token string) {
	t.Helper()
	const settle = 200 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for {
		n = fx.closeCount(t, "close", token)
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(pollEvery)
	}
	if n != 1 {
		t.Errorf("close() called %d times, want exactly 1 (W26, G5)", n)
		return
	}
	// A second close() would come from the same request's teardown.
	end := time.Now().Add(settle)
	for time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
		if n := fx.closeCount(t, "close", token); n != 1 {
			t.Errorf("close() called %d times, want exactly 1 (W26, G5)", n)
			return
		}
	}
}

// streamed is a response read line by line, with when each line arrived.
type streamed struct {
	resp  *http.Response
	lines []string
	at    []time.Duration // since the request was sent
	total time.Duration
}

// getStream GETs path and reads the body line by line (W23 timing checks).
func getStream(t *testing.T, f front, path string) streamed {
	t.Helper()
	req := newRequest(t, f, http.MethodGet, path, nil, nil)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines, at, err := timedLines(resp.Body, start)
	if err != nil {
		t.Fatalf("GET %s via %s: body: %v (lines so far %q)", path, f.name, err, lines)
	}
	return streamed{resp: resp, lines: lines, at: at, total: time.Since(start)}
}
