package admin

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"bridge/bridge/supervise"
)

type fakePool struct{}

func (fakePool) Ready() bool       { return false }
func (fakePool) Waiting() int      { return 3 }
func (fakePool) ReadyWorkers() int { return 0 }

type fakeFleet struct{ states []supervise.WorkerState }

func (f fakeFleet) States() []supervise.WorkerState { return f.states }
func (f fakeFleet) Generation() int                 { return 4 }

// Worker gauges are read at scrape time: states (every state present, 0 if
// none), memory per live worker, generation; reloads by result.
func TestWorkerMetrics(t *testing.T) {
	m := NewMetrics(fakePool{})
	m.WatchWorkers(fakeFleet{states: []supervise.WorkerState{
		{Name: "g4.w1", PID: 10, State: "busy", RSS: 1 << 20},
		{Name: "g4.w2", State: "backoff"},
		{Name: "g3.w1", PID: 7, State: "draining", RSS: 2048},
	}})
	m.Reloaded(true)
	m.Reloaded(false)
	m.Reloaded(true)
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	text := string(b)
	for _, want := range []string{
		`bridge_workers{state="busy"} 1`, `bridge_workers{state="backoff"} 1`,
		`bridge_workers{state="draining"} 1`, `bridge_workers{state="idle"} 0`,
		`bridge_worker_rss_bytes{worker="g4.w1"} 1.048576e+06`, `bridge_worker_rss_bytes{worker="g3.w1"} 2048`,
		"bridge_generation 4", `bridge_reloads_total{result="ok"} 2`, `bridge_reloads_total{result="failed"} 1`,
		"bridge_queue_depth 3",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, `worker="g4.w2"`) {
		t.Error("a worker with no process has a memory series")
	}
}
