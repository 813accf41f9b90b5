package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// swapApp answers with which app directory, interpreter and --env value
// serve it, so a client sees each swap.
const swapApp = `import os
import sys

APP = %q


def application(environ, start_response):
    body = " ".join([APP, sys.executable, os.environ.get("SWAP_TAG", "-")]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// Swapping runners without touching the app's code (issue 15): bridge runs
// from a config file; under 50 keep-alive clients, SIGHUP and POST /reload
// re-read the file and swap (a) the interpreter for a venv's, (b) 2 workers
// for 4 (and the runners' --env), (c) app directory A for B. Not one request
// fails. Then a broken file, a missing directory and a runner that does not
// start each fail the reload: the last generation keeps serving, the reason
// is logged, bridge_reloads_total{result="failed"} counts them.
func TestSwapRunnersByConfig(t *testing.T) {
	root := t.TempDir()
	appA, appB := filepath.Join(root, "a"), filepath.Join(root, "b")
	for dir, name := range map[string]string{appA: "A", appB: "B"} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeApp(t, dir, fmt.Sprintf(swapApp, name))
	}
	// A second interpreter at a path of its own: a venv that sees Debian's
	// packages (grpc), as a deployment's venv would.
	venv := filepath.Join(root, "venv")
	if out, err := exec.Command("/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", venv).CombinedOutput(); err != nil {
		t.Fatalf("make a venv (needs Debian's python3): %v\n%s", err, out)
	}
	venvPython := filepath.Join(venv, "bin", "python3")

	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	config := filepath.Join(root, "bridge.yaml")
	// settings is a whole config file: the listeners never change.
	settings := func(runner, chdir, interpreter string, workers int, more string) string {
		return fmt.Sprintf("http: %s\nadmin: %s\nadmin-reload: true\nthreads: 4\ngrace: 5s\n"+
			"runner: %s\nchdir: %s\ninterpreter: %s\nworkers: %d\n%s", httpAddr, adminAddr, runner, chdir, interpreter, workers, more)
	}
	writeConfig := func(text string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const spec = "python:app:application"
	writeConfig(settings(spec, appA, "/usr/bin/python3", 2, ""))
	b := startBridgeWithConfig(t, config, httpAddr, adminAddr)

	bodies := []string{
		"A /usr/bin/python3 -",      // at start
		"A " + venvPython + " -",    // (a) interpreter swapped
		"A " + venvPython + " four", // (b) 4 workers and SWAP_TAG=four
		"B " + venvPython + " four", // (c) app directory swapped
	}
	l := startSwapLoad(t, "http://"+httpAddr+"/", bodies, 50)
	defer l.stop()
	serving := func(want string) {
		t.Helper()
		if !l.waitFor(want, startTimeout) {
			t.Fatalf("not serving %q after %v (last body %q):\n%s", want, startTimeout, l.last.Load(), b.log.tail(30))
		}
	}
	serving(bodies[0])

	// (a) another interpreter, by SIGHUP.
	writeConfig(settings(spec, appA, venvPython, 2, ""))
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	serving(bodies[1])

	// (b) 4 workers instead of 2, by POST /reload.
	writeConfig(settings(spec, appA, venvPython, 4, "env: [SWAP_TAG=four]\n"))
	if code, body := adminPost(t, b, "/reload"); code != 200 || body != "reloaded: generation 3 serving\n" {
		t.Fatalf("POST /reload to 4 workers: %d %q\n%s", code, body, b.log.tail(30))
	}
	serving(bodies[2])
	// The log reaches the test through a pipe: wait for its lines.
	deadline := time.Now().Add(startTimeout)
	for servingWorkers(t, b) != 4 && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	if n := servingWorkers(t, b); n != 4 {
		t.Fatalf("%d workers serving after the reload to 4, want 4:\n%s", n, b.log.tail(30))
	}
	// And /metrics says so once generation 2 has drained.
	working := func() float64 {
		return metricValue(t, b, `bridge_workers{state="idle"}`) + metricValue(t, b, `bridge_workers{state="busy"}`) +
			metricValue(t, b, `bridge_workers{state="suspended"}`)
	}
	for (working() != 4 || metricValue(t, b, `bridge_workers{state="draining"}`) != 0) && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	if n := working(); n != 4 {
		t.Fatalf("bridge_workers counts %v idle, busy or suspended workers after the reload to 4, want 4", n)
	}

	// (c) app B, by SIGHUP; a log setting and a new listener in the same
	// file are not applied, but named.
	newListener := freeAddr(t)
	writeConfig(settings(spec, appB, venvPython, 4, "env: [SWAP_TAG=four]\nlog-level: debug\nuwsgi: "+newListener+"\n"))
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	serving(bodies[3])
	for _, key := range []string{"log-level", "uwsgi"} {
		if _, ok := b.log.waitRecord(startTimeout, func(r logRecord) bool {
			return r.str("message") == "reload: this setting changed but needs a restart; the running value stays" && r.str("key") == key
		}); !ok {
			t.Errorf("no 'needs a restart' warning naming %s:\n%s", key, b.log.tail(30))
		}
	}
	if c, err := net.DialTimeout("tcp", newListener, time.Second); err == nil {
		c.Close()
		t.Errorf("a reload opened the new uwsgi listener %s; listeners change only with a restart", newListener)
	}

	// Reloads that must fail, each leaving generation 4 serving.
	const tag = "env: [SWAP_TAG=four]\n"
	good := settings(spec, appB, venvPython, 4, tag)
	for i, bad := range []struct{ settings, logged string }{
		{good + "pipeline: [\n", "bridge.yaml:"},
		{good + "wrokers: 3\n", `unknown key "wrokers"`},
		{settings(spec, filepath.Join(root, "gone"), venvPython, 4, tag), "not a directory"},
		{good + "max-requests: -1\n", "must not be negative"},
		{settings(spec, appB, venvPython, 4, "env: [NOVALUE]\n"), "want KEY=VALUE"},
		{settings(`"python:"`, appB, venvPython, 4, tag), `runner "python:"`},
		{settings(spec, appB, filepath.Join(root, "nopython"), 4, tag), "nopython"},
		{settings("python:nosuchmodule:application", appB, venvPython, 4, tag), "nosuchmodule"},
	} {
		writeConfig(bad.settings)
		code, body := adminPost(t, b, "/reload")
		if code != 500 || body != "reload failed: see bridge's log; generation 4 keeps serving\n" {
			t.Fatalf("bad config %d: POST /reload answered %d %q:\n%s", i+1, code, body, b.log.tail(20))
		}
		// bridge's log reaches the test through a pipe, maybe after the answer.
		if _, ok := b.log.waitRecord(startTimeout, func(r logRecord) bool {
			return r.str("message") == "reload failed: the running generation keeps serving" && strings.Contains(r.str("error"), bad.logged)
		}); !ok {
			t.Errorf("bad config %d: no failed reload logged with %q:\n%s", i+1, bad.logged, b.log.tail(20))
		}
	}
	if got := metricValue(t, b, `bridge_reloads_total{result="failed"}`); got != 8 {
		t.Errorf("bridge_reloads_total{result=\"failed\"} = %v, want 8", got)
	}
	if got := metricValue(t, b, `bridge_reloads_total{result="ok"}`); got != 3 {
		t.Errorf("bridge_reloads_total{result=\"ok\"} = %v, want 3", got)
	}
	// SIGHUP with a broken file: no answer to read, but it counts and logs.
	writeConfig(good + "pipeline: -1\n")
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(startTimeout)
	for metricValue(t, b, `bridge_reloads_total{result="failed"}`) != 9 && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	if got := metricValue(t, b, `bridge_reloads_total{result="failed"}`); got != 9 {
		t.Errorf("failed reloads after a bad SIGHUP: %v, want 9", got)
	}
	before := l.ok.Load()
	for l.ok.Load() < before+100 && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	l.stop()
	t.Logf("%d requests ok, %d failed over 3 swaps and 9 failed reloads; bodies seen: %v", l.ok.Load(), l.failed.Load(), l.seenBodies())
	if l.failed.Load() != 0 {
		t.Fatalf("%d failed requests (first: %v)", l.failed.Load(), l.firstBad.Load())
	}
	if last := l.last.Load(); last != bodies[3] {
		t.Fatalf("after the failed reloads: %q, want %q", last, bodies[3])
	}
	if gen := metricValue(t, b, "bridge_generation"); gen != 4 {
		t.Errorf("bridge_generation = %v, want 4", gen)
	}
}

// startBridgeWithConfig starts `bridge serve --config FILE` with nothing
// else on the command line, so that every setting comes from the file (and
// a reload may change it), and stops it when the test ends.
func startBridgeWithConfig(t *testing.T, config, httpAddr, adminAddr string) *bridgeProc {
	t.Helper()
	trackSources()
	b := &bridgeProc{log: &logBuffer{}, done: make(chan struct{}), httpAddr: httpAddr, adminAddr: adminAddr}
	b.cmd = exec.Command(bridgeBin, "serve", "--config", config)
	b.cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	return b.launch(t, true)
}

// swapLoad is n keep-alive clients sending GET in a loop; a request fails
// if it gets no answer, a status other than 200, or a body not in want.
type swapLoad struct {
	want     map[string]bool
	ok       atomic.Int64
	failed   atomic.Int64
	firstBad atomic.Value
	last     atomic.Value // string: the latest body
	seen     sync.Map
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func startSwapLoad(t *testing.T, url string, want []string, n int) *swapLoad {
	l := &swapLoad{want: map[string]bool{}, done: make(chan struct{})}
	l.last.Store("")
	for _, w := range want {
		l.want[w] = true
	}
	client := &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	t.Cleanup(client.CloseIdleConnections)
	const maxRequestsPerClient = 20000 // bounded, whatever happens
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range maxRequestsPerClient {
				select {
				case <-l.done:
					return
				default:
				}
				l.one(client, url)
			}
		}()
	}
	return l
}

func (l *swapLoad) one(client *http.Client, url string) {
	resp, err := client.Get(url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	switch {
	case err != nil:
		l.bad(err.Error())
	case resp.StatusCode != 200 || !l.want[string(body)]:
		l.bad(fmt.Sprintf("%d %q", resp.StatusCode, body))
	default:
		l.ok.Add(1)
		l.last.Store(string(body))
		l.seen.Store(string(body), true)
	}
}

func (l *swapLoad) bad(what string) {
	l.failed.Add(1)
	l.firstBad.CompareAndSwap(nil, what)
}

// waitFor waits until a client got body, and the load has then run a while
// longer: the swap happened under load.
func (l *swapLoad) waitFor(body string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, ok := l.seen.Load(body); ok {
			return true
		}
		time.Sleep(pollEvery)
	}
	return false
}

func (l *swapLoad) stop() {
	l.stopOnce.Do(func() { close(l.done) })
	l.wg.Wait()
}

func (l *swapLoad) seenBodies() []string {
	var out []string
	l.seen.Range(func(k, _ any) bool {
		out = append(out, k.(string))
		return true
	})
	return out
}

// servingWorkers counts the workers of the generation serving now, from the
// "worker ready" log lines whose worker name carries that generation (g3.w1).
func servingWorkers(t *testing.T, b *bridgeProc) int {
	t.Helper()
	gen := int(metricValue(t, b, "bridge_generation"))
	names := map[string]bool{}
	for _, r := range b.log.records() {
		if w := r.str("worker"); r.str("message") == "worker ready" && strings.HasPrefix(w, "g"+strconv.Itoa(gen)+".") {
			names[w] = true
		}
	}
	return len(names)
}

// metricValue reads one sample of bridge's /metrics, e.g.
// `bridge_reloads_total{result="failed"}`; a sample that is not there
// fails the test.
func metricValue(t *testing.T, b *bridgeProc, sample string) float64 {
	t.Helper()
	code, body := adminGet(t, b, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s %q: %v", sample, v, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s:\n%s", sample, body)
	return 0
}
