// Package admin serves bridge's operator endpoints: liveness and readiness
// probes, metrics and reload. Probes never wait on a worker, so they answer
// even when every slot is busy.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"bridge/bridge/supervise"
)

// Readiness says whether bridge takes traffic.
type Readiness interface {
	// Ready reports whether at least one worker accepts requests.
	Ready() bool
}

// Reloader starts a new worker generation (supervise.Fleet).
type Reloader interface {
	Reload(ctx context.Context) (int, error)
}

// Server holds the state the endpoints report.
type Server struct {
	workers  Readiness
	metrics  *Metrics
	draining atomic.Bool

	// Optional: worker states explain a failing /readyz; Reload serves
	// POST /reload.
	States func() []supervise.WorkerState
	Reload Reloader
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
			writeText(w, http.StatusServiceUnavailable, "no ready worker"+s.describeWorkers()+"\n")
		default:
			writeText(w, http.StatusOK, "ready\n")
		}
	})
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	if s.Reload != nil {
		mux.HandleFunc("POST /reload", s.reload)
	}
	return mux
}

// reload answers once the new generation serves (200) or failed to start
// (500, the old one still serving); the operator sees the reason either way.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	// Not the request's context: a client that hangs up must not abort a
	// generation half started.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Minute)
	defer cancel()
	gen, err := s.Reload.Reload(ctx)
	switch {
	case errors.Is(err, supervise.ErrStopping):
		writeText(w, http.StatusServiceUnavailable, "not reloading: bridge is shutting down\n")
	case err != nil:
		writeText(w, http.StatusInternalServerError, fmt.Sprintf("reload failed, generation %d keeps serving: %v\n", gen, err))
	default:
		writeText(w, http.StatusOK, fmt.Sprintf("reloaded: generation %d serving\n", gen))
	}
}

// describeWorkers says what the workers are doing, e.g. " (w1 backoff,
// w2 starting)", so a failing probe explains a crash loop.
func (s *Server) describeWorkers() string {
	if s.States == nil {
		return ""
	}
	var parts []string
	for _, st := range s.States() {
		parts = append(parts, st.Name+" "+st.State)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
