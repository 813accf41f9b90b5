// Package admin serves bridge's operator endpoints: liveness and readiness
// probes. It never waits on a worker, so probes answer even when every slot
// is busy.
package admin

import (
	"net/http"
	"sync/atomic"
)

// Readiness says whether bridge takes traffic.
type Readiness interface {
	// Ready reports whether at least one worker accepts requests.
	Ready() bool
}

// Server holds the state the endpoints report.
type Server struct {
	workers  Readiness
	metrics  *Metrics
	draining atomic.Bool
}

// New returns admin endpoints over workers; metrics may be nil.
func New(workers Readiness, metrics *Metrics) *Server {
	return &Server{workers: workers, metrics: metrics}
}

// Drain marks bridge as shutting down: /readyz fails from now on, so load
// balancers stop sending before the listeners close.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the admin mux: /healthz (the process is alive), /readyz
// (a worker is ready and bridge is not draining) and /metrics (Prometheus).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.draining.Load():
			writeText(w, http.StatusServiceUnavailable, "draining\n")
		case !s.workers.Ready():
			writeText(w, http.StatusServiceUnavailable, "no ready worker\n")
		default:
			writeText(w, http.StatusOK, "ready\n")
		}
	})
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	return mux
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
