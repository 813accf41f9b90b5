package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// versionApp is a WSGI app that answers with its code's version; /slow
// takes two seconds.
const versionApp = `import time

VERSION = %q


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(2)
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

func writeApp(t *testing.T, dir, code string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Operations with the real binary, real signals and the Python runner
// (issue 6, items 1 and 2): SIGHUP and POST /reload load changed code under
// 50 clients without a failed request; a reload of broken code keeps the
// old code serving; SIGTERM lets 20 in-flight 2-second requests finish and
// exits 0 within grace + 1 s.
func TestReloadAndDrain(t *testing.T) {
	dir := t.TempDir()
	writeApp(t, dir, fmt.Sprintf(versionApp, "v1"))
	// The versions differ only in content, and may be written within one
	// second: a cached .pyc (keyed by mtime in seconds and size) would pass
	// for fresh.
	// POST /reload with a token (--admin-token-file), as an operator would.
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte("e2e-reload-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, bridgeOpts{dir: dir, spec: "python:app:application", http: true, admin: true,
		workers: 2, threads: 10, env: []string{"PYTHONDONTWRITEBYTECODE=1"},
		args: []string{"--admin-token-file", tokenFile}})
	b.adminToken = "e2e-reload-token"
	base := "http://" + b.httpAddr
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (int, string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body), nil
	}

	// 50 clients for the whole reload sequence.
	var ok, failed atomic.Int64
	var firstBad atomic.Value
	seen := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := get("/")
				if err != nil || code != 200 {
					failed.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprintf("%d %q %v", code, body, err))
					continue
				}
				seen.Store(body, true)
				ok.Add(1)
			}
		}()
	}
	waitVersion := func(want string) {
		t.Helper()
		deadline := time.Now().Add(startTimeout)
		for time.Now().Before(deadline) {
			if _, body, _ := get("/"); body == want {
				return
			}
			time.Sleep(pollEvery)
		}
		t.Fatalf("still not serving %s:\n%s", want, b.log.tail(30))
	}
	time.Sleep(300 * time.Millisecond)

	writeApp(t, dir, fmt.Sprintf(versionApp, "v2"))
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitVersion("v2")

	writeApp(t, dir, fmt.Sprintf(versionApp, "v3"))
	code, body := adminPost(t, b, "/reload")
	if code != 200 || body != "reloaded: generation 3 serving\n" {
		t.Fatalf("POST /reload: %d %q", code, body)
	}
	waitVersion("v3")

	writeApp(t, dir, "def application(environ, start_response):\n    return [b'oops'\n")
	code, body = adminPost(t, b, "/reload")
	// The reason (the app's exception) is in bridge's log only.
	if code != 500 || strings.Contains(body, "SyntaxError") || body != "reload failed: see bridge's log; generation 3 keeps serving\n" {
		t.Fatalf("POST /reload of broken code: %d %q", code, body)
	}
	if !strings.Contains(b.log.String(), "SyntaxError") {
		t.Errorf("the failed reload's SyntaxError is not in bridge's log:\n%s", b.log.tail(20))
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests ok, %d failed over 2 reloads and 1 failed reload", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d failed requests (first: %v)", failed.Load(), firstBad.Load())
	}
	if _, body, _ := get("/"); body != "v3" {
		t.Fatalf("after the failed reload: %q, want v3", body)
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if _, ok := seen.Load(v); !ok {
			t.Errorf("no client saw %s", v)
		}
	}

	// Drain: 20 requests of 2 s in flight, then SIGTERM.
	results := make(chan string, 20)
	for range 20 {
		go func() {
			code, body, err := get("/slow")
			results <- fmt.Sprintf("%d %s %v", code, body, err)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	b.signalled = true
	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if r := <-results; r != "200 v3 <nil>" {
			t.Errorf("in-flight request during drain: %s", r)
		}
	}
	select {
	case <-b.done:
	case <-time.After(stopTimeout):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Fatalf("bridge did not exit within %v of SIGTERM", stopTimeout)
	}
	took := time.Since(start)
	t.Logf("SIGTERM with 20 requests in flight: exit after %v (grace 5s)", took)
	if b.waitErr != nil {
		t.Errorf("exit status after SIGTERM: %v", b.waitErr)
	}
	if took > 6*time.Second {
		t.Errorf("exit took %v, want at most grace + 1s", took)
	}
}

func adminPost(t *testing.T, b *bridgeProc, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+b.adminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+b.adminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// stuckApps ignore cancellation: a sleep in the app cannot be interrupted
// by the shim. Each names the function the stack dump must show.
var stuckApps = []struct{ lang, file, spec, code string }{
	{"python", "app.py", "python:app:application", `import time


def wedged_in_the_app():
    time.sleep(120)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        wedged_in_the_app()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
`},
	// Perl runs a signal handler at the next statement, and a signal ends
	// a sleep early: a loop that waits forever (polling) stays stuck and in
	// the stack, as real stuck apps do; a lone "sleep 120" would return.
	{"perl", "app.psgi", "perl:app.psgi", `use strict;
sub wedged_in_the_app { select(undef, undef, undef, 0.5) while 1 }
sub {
    my $env = shift;
    wedged_in_the_app() if $env->{PATH_INFO} eq '/hang';
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => 2], ['ok']];
};
`},
	{"ruby", "config.ru", "ruby:config.ru", `def wedged_in_the_app
  sleep 120
end

run lambda { |env|
  wedged_in_the_app if env['PATH_INFO'] == '/hang'
  [200, { 'content-type' => 'text/plain', 'content-length' => '2' }, ['ok']]
}
`},
}

// Timeouts with real shims (issue 6, item 5): a request past --timeout gets
// 504; the app keeps sleeping past --cancel-grace, so the shim is asked for
// its stacks, which name the app's function, and the worker is replaced;
// the next requests are served.
func TestStuckWorkerIsReplaced(t *testing.T) {
	for _, app := range stuckApps {
		t.Run(app.lang, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, app.file), []byte(app.code), 0o644); err != nil {
				t.Fatal(err)
			}
			testStuckWorker(t, startBridge(t, bridgeOpts{dir: dir, spec: app.spec, http: true, admin: true,
				workers: 1, threads: 1, args: []string{"--timeout", "1s", "--cancel-grace", "1s"}}))
		})
	}
}

func testStuckWorker(t *testing.T, b *bridgeProc) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + b.httpAddr + "/hang")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("stuck request: %d, want 504", resp.StatusCode)
	}
	rec, ok := b.log.waitRecord(startTimeout, func(r logRecord) bool {
		return r.str("message") == "worker ready" && strings.HasPrefix(r.str("worker"), "w1.")
	})
	if !ok {
		t.Fatalf("no replacement worker (%v):\n%s", rec, b.log.tail(40))
	}
	// The shim writes its stacks from a thread of its own; on a loaded
	// machine they may land after the replacement is ready.
	if _, ok := b.log.waitRecord(stopTimeout, func(r logRecord) bool {
		return strings.Contains(r.runner("traceback"), "wedged_in_the_app")
	}); !ok {
		t.Errorf("no stack naming the app's function:\n%s", b.log.tail(40))
	}
	logs := b.log.String()
	for _, want := range []string{"worker is stuck", "SIGUSR1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, b.log.tail(40))
		}
	}
	for range 3 {
		resp, err := client.Get("http://" + b.httpAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after the replacement: %d", resp.StatusCode)
		}
	}
	// Counted once the old runner is gone (it gets a shutdown request and
	// a few seconds before it is killed).
	deadline := time.Now().Add(stopTimeout)
	for {
		_, metrics := adminGet(t, b, "/metrics")
		if strings.Contains(metrics, `bridge_worker_restarts_total{reason="stuck"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stuck restart in /metrics")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func adminGet(t *testing.T, b *bridgeProc, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + b.adminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A second SIGTERM during the drain stops bridge at once, runners included
// (issue 6, item 2).
func TestSecondSignalStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeApp(t, dir, fmt.Sprintf(versionApp, "v1"))
	b := startBridge(t, bridgeOpts{dir: dir, spec: "python:app:application", http: true, workers: 1, threads: 2})
	pids := runnerPIDs(t, b)
	go http.Get("http://" + b.httpAddr + "/slow") // keeps the drain busy for 2 s
	time.Sleep(300 * time.Millisecond)
	b.signalled = true
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.log.waitRecord(stopTimeout, func(r logRecord) bool {
		return strings.HasPrefix(r.str("message"), "shutting down: no new connections")
	}); !ok {
		t.Fatalf("no drain after SIGTERM:\n%s", b.log.tail(20))
	}
	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(stopTimeout):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Fatal("bridge still running after a second SIGTERM")
	}
	took := time.Since(start)
	t.Logf("second SIGTERM: bridge gone after %v (%v)", took, b.waitErr)
	if took > time.Second {
		t.Errorf("second SIGTERM took %v, the in-flight request was 2 s", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("runner %d outlived bridge", pid)
		}
	}
}

// runnerPIDs reads the runners' pids from the "worker ready" log lines.
func runnerPIDs(t *testing.T, b *bridgeProc) map[int]bool {
	t.Helper()
	pids := map[int]bool{}
	for _, r := range b.log.records() {
		if r.str("message") == "worker ready" {
			if pid, ok := r.fields["pid"].(float64); ok {
				pids[int(pid)] = true
			}
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no worker pids in the log:\n%s", b.log.tail(20))
	}
	return pids
}
