package front_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"bridge/bridge/admin"
	"bridge/bridge/dispatch"
	"bridge/bridge/supervise"
	"bridge/bridge/testrunner"
)

// failFile makes runners started from now on fail with msg (the test
// runner reads it at start), until the returned func removes it.
func failFile(t *testing.T, c *supervise.Config) (fail func(msg string), heal func()) {
	path := filepath.Join(t.TempDir(), "fail")
	c.Command.Env = append(c.Command.Env, testrunner.FailFileEnvVar+"="+path)
	return func(msg string) {
			if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
				t.Fatal(err)
			}
		}, func() {
			os.Remove(path)
		}
}

func pids(states []supervise.WorkerState) map[int]bool {
	m := map[int]bool{}
	for _, st := range states {
		if st.PID > 0 {
			m[st.PID] = true
		}
	}
	return m
}

// Reload (issue 6, item 1): 50 clients keep sending while the workers are
// replaced by 10 new generations; not one request fails, and each old
// generation's processes are gone once it has drained.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	var reloads atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.RecycleGrace = 5 * time.Second
		c.OnReload = func(ok bool) {
			if ok {
				reloads.Add(1)
			}
		}
	})
	first := pids(s.fleet.States())
	l := startLoad(s.httpURL+"/sleep?ms=20", "slept", 50, 0)
	time.Sleep(200 * time.Millisecond)
	for i := range 10 {
		gen, err := s.fleet.Reload(context.Background())
		if err != nil || gen != i+2 {
			t.Fatalf("reload %d: generation %d, %v", i+1, gen, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	l.finish()
	t.Logf("%v over 10 reloads", l)
	if l.failed.Load() != 0 || l.ok.Load() < 200 {
		t.Fatalf("%v\n%s", l, s.logs.String())
	}
	if reloads.Load() != 10 || s.fleet.Generation() != 11 {
		t.Fatalf("%d reloads counted, generation %d", reloads.Load(), s.fleet.Generation())
	}
	// The old generations drain in the background; give them a moment.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.fleet.States()) != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	states := s.fleet.States()
	if len(states) != 2 || !strings.HasPrefix(states[0].Name, "g11.") {
		t.Fatalf("workers after the reloads: %+v", states)
	}
	for pid := range first {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("first-generation runner %d still alive", pid)
		}
	}
}

// A reload whose app no longer starts leaves the running generation serving,
// untouched, and says why; the next good reload works.
func TestFailedReloadKeepsOldGeneration(t *testing.T) {
	var fail func(string)
	var heal func()
	var failed atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		fail, heal = failFile(t, c)
		c.OnReload = func(ok bool) {
			if !ok {
				failed.Add(1)
			}
		}
	})
	before := pids(s.fleet.States())
	fail("SyntaxError: the new code is broken")
	l := startLoad(s.httpURL+"/hello", "hello world\n", 8, 0)
	gen, err := s.fleet.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SyntaxError: the new code is broken") || gen != 1 {
		t.Fatalf("broken reload: generation %d, error %v", gen, err)
	}
	time.Sleep(100 * time.Millisecond)
	l.finish()
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Fatalf("requests during a failed reload: %v", l)
	}
	after := pids(s.fleet.States())
	if len(after) != 2 || len(before) != 2 || !after[firstKey(before)] {
		t.Fatalf("workers changed by a failed reload: %v -> %v", before, after)
	}
	if failed.Load() != 1 || !strings.Contains(s.logs.String(), "reload failed: the running generation keeps serving") {
		t.Fatalf("failed reload not reported (count %d):\n%s", failed.Load(), s.logs.String())
	}
	heal()
	if gen, err := s.fleet.Reload(context.Background()); err != nil || gen != 2 {
		t.Fatalf("reload after the fix: generation %d, %v", gen, err)
	}
}

func firstKey(m map[int]bool) int {
	for k := range m {
		return k
	}
	return 0
}

// Timeouts (issue 6, item 5): an app that ignores the cancellation of its
// timed-out request past the cancel grace has its stacks logged and its
// worker replaced; the client got 504 and later requests are served.
func TestStuckWorkerIsDumpedAndReplaced(t *testing.T) {
	var stuck atomic.Int64
	s := startStackWith(t, 300*time.Millisecond, func(c *supervise.Config) {
		c.Workers, c.Threads, c.CancelGrace = 1, 1, 500*time.Millisecond
		c.OnRestart = func(reason string) {
			if reason == "stuck" {
				stuck.Add(1)
			}
		}
	})
	victim := s.fleet.Info().Pid
	resp, err := client.Get(s.httpURL + "/hang?ms=60000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("stuck request: %d, want 504", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for stuck.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := s.logs.String()
	if stuck.Load() != 1 {
		t.Fatalf("no stuck restart:\n%s", logs)
	}
	for _, want := range []string{"worker is stuck", "stack dump (SIGUSR1)", "testrunner.handle"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if syscall.Kill(int(victim), 0) == nil {
		t.Errorf("stuck runner %d still alive", victim)
	}
	l := startLoad(s.httpURL+"/hello", "hello world\n", 1, 5)
	l.wait()
	if l.failed.Load() != 0 {
		t.Fatalf("after the replacement: %v", l)
	}
}

// An app that does stop when its request is cancelled keeps its worker: the
// slot comes back once the runner no longer lists the request.
func TestCancelledRequestThatStopsKeepsWorker(t *testing.T) {
	var restarts atomic.Int64
	s := startStackWith(t, 200*time.Millisecond, func(c *supervise.Config) {
		c.Workers, c.Threads, c.CancelGrace = 1, 1, 500*time.Millisecond
		c.OnRestart = func(string) { restarts.Add(1) }
	})
	for range 3 {
		resp, err := client.Get(s.httpURL + "/sleep?ms=5000") // honours cancellation
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504", resp.StatusCode)
		}
		// The only slot must come back for the next request to be served.
		l := startLoad(s.httpURL+"/hello", "hello world\n", 1, 1)
		l.wait()
		if l.failed.Load() != 0 {
			t.Fatalf("slot not returned after a cancelled request: %v", l)
		}
	}
	time.Sleep(700 * time.Millisecond) // past the cancel grace
	if restarts.Load() != 0 {
		t.Fatalf("%d restarts of a worker that honoured cancellation:\n%s", restarts.Load(), s.logs.String())
	}
}

// --max-rss (issue 6, item 4): a worker whose memory passes the limit is
// recycled, replacement first, and no request fails.
func TestMaxRSSRecycles(t *testing.T) {
	var recycled atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.Workers, c.MaxRSS, c.RecycleGrace = 1, 128<<20, 5*time.Second
		c.OnRestart = func(reason string) {
			if reason == "max-rss" {
				recycled.Add(1)
			}
		}
	})
	st := s.fleet.States()
	if len(st) != 1 || st[0].RSS <= 0 || st[0].RSS > 128<<20 {
		t.Fatalf("worker memory before: %+v", st)
	}
	l := startLoad(s.httpURL+"/hello", "hello world\n", 4, 0)
	resp, err := client.Get(s.httpURL + "/grow?mb=160")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for recycled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	l.finish()
	if recycled.Load() != 1 || l.failed.Load() != 0 {
		t.Fatalf("recycled %d, load %v\n%s", recycled.Load(), l, s.logs.String())
	}
	if !strings.Contains(s.logs.String(), "worker uses more memory than --max-rss") {
		t.Errorf("no max-rss log line")
	}
	if st := s.fleet.States(); len(st) != 1 || st[0].RSS > 128<<20 || st[0].Name != "w1.1" {
		t.Fatalf("worker after recycling: %+v", st)
	}
}

// Crash loop (issue 6, item 3): a worker that cannot restart backs off,
// shows as "backoff" and fails readiness when it was the only one; it comes
// back once it can start again.
func TestCrashLoopShowsInReadiness(t *testing.T) {
	var fail func(string)
	var heal func()
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.Workers = 1
		fail, heal = failFile(t, c)
	})
	adm := admin.New(s.pool, nil)
	adm.States = s.fleet.States
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		adm.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, _ := probe(); code != 200 {
		t.Fatalf("readyz before the crash: %d", code)
	}
	fail("ImportError: a dependency vanished")
	if err := syscall.Kill(int(s.fleet.Info().Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code, body = probe(); strings.Contains(body, "backoff") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 503 || !strings.Contains(body, "w1 backoff") {
		t.Fatalf("readyz in a crash loop: %d %q", code, body)
	}
	if !strings.Contains(s.logs.String(), "ImportError: a dependency vanished") {
		t.Errorf("the crash loop's reason is not logged:\n%s", s.logs.String())
	}
	heal()
	deadline = time.Now().Add(15 * time.Second)
	for code != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		code, body = probe()
	}
	if code != 200 {
		t.Fatalf("readyz after the cause is fixed: %d %q", code, body)
	}
}

// Backpressure (issue 6, item 6): with the only slot busy, a request that
// waits past the queue timeout gets 503 with Retry-After, on both fronts
// (a full queue answers the same way, see dispatch's tests).
func TestBackpressureAnswers503WithRetryAfter(t *testing.T) {
	s := startStackPool(t, 0, dispatch.NewPool(1, 300*time.Millisecond), func(c *supervise.Config) {
		c.Workers, c.Threads = 1, 1
	})
	busy := startLoad(s.httpURL+"/sleep?ms=1500", "slept", 1, 1)
	defer busy.wait()
	time.Sleep(300 * time.Millisecond) // the slot is taken
	resp, err := client.Get(s.httpURL + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("HTTP past the queue timeout: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	p, _ := golden(t, "get_plain")
	uresp, _, err := roundTrip(t, "unix", s.uwsgiSock, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if uresp.StatusCode != 503 || uresp.Header.Get("Retry-After") != "1" {
		t.Fatalf("uwsgi past the queue timeout: %d, Retry-After %q", uresp.StatusCode, uresp.Header.Get("Retry-After"))
	}
}

// A client that leaves does not make its app stuck: without a request
// deadline the app may finish in its own time, and its slot comes back then
// (the next request waits for it instead of queueing in the runner).
func TestClientGoneWithoutDeadlineIsNotStuck(t *testing.T) {
	var restarts atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.Workers, c.Threads, c.CancelGrace = 1, 1, 200*time.Millisecond
		c.OnRestart = func(string) { restarts.Add(1) }
	})
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := impatient.Get(s.httpURL + "/hang?ms=1500"); err == nil {
		resp.Body.Close()
		t.Fatalf("the impatient client got %d", resp.StatusCode)
	}
	l := startLoad(s.httpURL+"/hello", "hello world\n", 1, 1)
	l.wait()
	if l.failed.Load() != 0 {
		t.Fatalf("request after the abandoned one: %v", l)
	}
	time.Sleep(500 * time.Millisecond)
	if restarts.Load() != 0 || strings.Contains(s.logs.String(), "worker is stuck") {
		t.Fatalf("a worker whose client left was called stuck:\n%s", s.logs.String())
	}
}
