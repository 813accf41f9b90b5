package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"bridge/bridge/testrunner"
)

func TestMain(m *testing.M) {
	testrunner.Main()
	os.Exit(m.Run())
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs bridge with args in the background, its log in logs.
// stop, to be called once (deferred), ends it, waits for Run to return and
// fails the test if Run failed.
func startServe(t *testing.T, args []string) (logs *lockedBuf, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	logs = &lockedBuf{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, args, io.Discard, logs) }()
	return logs, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

// waitReady waits until bridge logs that it is ready, and fails the test
// if that takes over 30 s (the caller's deferred stop then ends bridge).
func waitReady(t *testing.T, logs *lockedBuf) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "bridge ready"); {
		if time.Now().After(deadline) {
			t.Fatalf("bridge did not come up:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Drain (docs/design.md "Supervision", issue 6 item 2): after the shutdown signal,
// readiness fails, new connections are refused, 20 in-flight 2-second
// requests all finish with 200, and serve returns nil within grace + 1 s.
// On the way: a reload through the admin listener, and a /metrics sample.
func TestServeDrainsInFlightRequests(t *testing.T) {
	t.Setenv(testrunner.EnvVar, "1") // inherited by the runner processes
	addr, adminAddr := freeAddr(t), freeAddr(t)
	ctx, signal := context.WithCancel(context.Background())
	logs := &lockedBuf{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "--runner", "exec:" + os.Args[0], "--http", addr,
			"--workers", "2", "--threads", "10", "--grace", "5s", "--admin", adminAddr, "--admin-reload"}, io.Discard, logs)
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/hello")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge did not come up: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	resp, err := client.Post("http://"+adminAddr+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "reloaded: generation 2 serving\n" {
		t.Fatalf("POST /reload: %d %q", resp.StatusCode, body)
	}

	const inflight = 20
	results := make(chan string, inflight)
	for range inflight {
		go func() {
			resp, err := client.Get("http://" + addr + "/sleep?ms=2000")
			if err != nil {
				results <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- resp.Status + " " + string(b)
		}()
	}
	time.Sleep(500 * time.Millisecond) // all 20 are running in the app
	if code := status(t, client, "http://"+adminAddr+"/readyz"); code != 200 {
		t.Fatalf("readyz before shutdown: %d", code)
	}
	resp, err = client.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var sample []string // shown with -v: what an operator scrapes
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "bridge_") && !strings.Contains(line, "_bucket") {
			sample = append(sample, line)
		}
	}
	t.Logf("/metrics sample:\n%s", strings.Join(sample, "\n"))
	for _, want := range []string{
		`bridge_requests_total{code="200",runner="exec:` + os.Args[0] + `"} 1`,
		"bridge_requests_in_flight 20", "bridge_workers_ready 2", "bridge_queue_depth 0",
		"bridge_request_duration_seconds_bucket", "process_resident_memory_bytes",
		`bridge_workers{state="busy"} 2`, `bridge_workers{state="backoff"} 0`,
		`bridge_worker_rss_bytes{worker="g2.w1"}`, "bridge_generation 2",
		`bridge_reloads_total{result="ok"} 1`, `bridge_reloads_total{result="failed"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	start := time.Now()
	signal()
	// Readiness fails at once, while the requests are still running.
	readyCode := 0
	for i := 0; i < 50; i++ {
		if readyCode = status(t, client, "http://"+adminAddr+"/readyz"); readyCode == 503 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if readyCode != 503 {
		t.Errorf("readyz during drain: %d, want 503", readyCode)
	}
	for range inflight {
		if r := <-results; r != "200 OK slept" {
			t.Errorf("in-flight request: %s", r)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
	d := time.Since(start)
	t.Logf("20 in-flight requests drained; serve returned %v after the signal", d)
	if d > 6*time.Second {
		t.Errorf("drain took %v, want at most grace (5s) + 1s", d)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after shutdown")
	}
	if !strings.Contains(logs.String(), "bridge stopped") {
		t.Errorf("no 'bridge stopped' log line")
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"serve", "--runner", "python:app:application"}, "no listener", 2},
		{[]string{"serve", "--http", "127.0.0.1:0"}, "--runner is required", 2},
		{[]string{"serve", "--runner", "ruby-ish", "--http", "127.0.0.1:0"}, "want LANGUAGE:TARGET", 2},
		{[]string{"serve", "--runner", "python:app", "--http", "127.0.0.1:0", "--workers", "0"}, "--workers 0", 2},
		{[]string{"serve", "--runner", "python:app", "--http", "nonsense"}, "want host:port, unix:/path or fd:NAME", 1},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, 2},
		{[]string{"serve", "--runner", "python:app", "--uwsgi", "0.0.0.0:3031"}, "must be a unix socket or a loopback address", 2},
		{[]string{"serve", "--runner", "python:app", "--uwsgi", "10.1.2.3:3031"}, "must be a unix socket or a loopback address", 2},
	} {
		err := Run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != tc.code {
			t.Errorf("%v: got %v (exit %d), want %q (exit %d)", tc.args, err, ExitCode(err), tc.want, tc.code)
		}
	}
}

// Go checks only what no runner could serve; how many streams a runner
// takes is the runner's to say (Describe.slots), so a large pipeline is fine.
func TestValidateGenericBounds(t *testing.T) {
	for _, tc := range []struct {
		threads, pipeline int
		want              string
	}{
		{1, 0, ""},
		{1, 8, ""},
		{16, 1000, ""},
		{0, 8, "--threads 0: must be at least 1"},
		{-1, 8, "--threads -1: must be at least 1"},
		{1, -1, "--pipeline -1: must be 0 or more"},
	} {
		o := &options{workers: 2, threads: tc.threads, pipeline: tc.pipeline, http: listFlag{"127.0.0.1:0"}, socketMode: "0666", maxHeaderSize: 64 << 10}
		err := validate(o)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want || ExitCode(err) != 2) {
			t.Errorf("threads %d pipeline %d: got %v, want %q", tc.threads, tc.pipeline, err, tc.want)
		}
	}
}

func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), []string{"serve", "--runner", "exec:" + os.Args[0], "--http", ln.Addr().String()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("got %v", err)
	}
}

func status(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1 << 20, maxGCPercent},  // 8 MiB over 1 MiB would be 800%
		{4 << 20, 200},           // 8 MiB over 4 MiB
		{16 << 20, 50},           // GOGC=50's bound from here on
		{18 << 20, minGCPercent}, // 1,000 connections: as before
		{200 << 20, minGCPercent},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}
