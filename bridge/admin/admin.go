// Package admin serves bridge's operator endpoints: liveness and readiness
// probes, metrics and reload. Probes never wait on a worker, so they answer
// even when every slot is busy.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
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

	// Optional: worker states explain a failing /readyz.
	States func() []supervise.WorkerState
	// Reload is what POST /reload runs (SIGHUP runs the same one: see
	// Coalesce). POST /reload exists only if ReloadOpen is set or Token is
	// not empty (--admin-reload, --admin-token-file).
	Reload     Reloader
	ReloadOpen bool
	// Token, if set, must come with POST /reload as "Authorization:
	// Bearer TOKEN" (ReadToken).
	Token string
}

// New returns admin endpoints over workers; metrics may be nil.
func New(workers Readiness, metrics *Metrics) *Server {
	return &Server{workers: workers, metrics: metrics}
}

// Drain marks bridge as shutting down: /readyz fails from now on, so load
// balancers stop sending before the listeners close.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the admin mux: /healthz (the process is alive), /readyz
// (a worker is ready and bridge is not draining), /metrics (Prometheus) and,
// when turned on, POST /reload. Any request other than GET or HEAD that a
// browser sent (it carries Origin, or Sec-Fetch-Site) gets 403: a web page
// the operator visits must not be able to reload bridge, even from a
// rebound host name, whatever the token.
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
	if s.Reload != nil && (s.ReloadOpen || s.Token != "") {
		mux.HandleFunc("POST /reload", s.authorized(s.reload))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && fromBrowser(r) {
			writeText(w, http.StatusForbidden, "forbidden: the admin endpoints take no requests from web pages (Origin)\n")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// fromBrowser reports whether r was sent by a web browser: browsers add
// Origin to every POST (cross-site or not) and Sec-Fetch-Site to every
// request; curl and probes send neither.
func fromBrowser(r *http.Request) bool {
	_, origin := r.Header["Origin"]
	_, fetch := r.Header["Sec-Fetch-Site"]
	return origin || fetch
}

// authorized lets a request through only with the Bearer token, if one is
// set; the comparison takes the same time whatever the token sent.
func (s *Server) authorized(next http.HandlerFunc) http.HandlerFunc {
	if s.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.Token))
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bridge admin"`)
			writeText(w, http.StatusUnauthorized, "unauthorized: POST /reload needs 'Authorization: Bearer TOKEN' (--admin-token-file)\n")
			return
		}
		next(w, r)
	}
}

// bearer takes the token out of an Authorization header value; the scheme
// is case-insensitive (RFC 9110, 11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// reload answers once the new generation serves (200) or failed to start
// (500, the old one still serving). Why it failed goes to bridge's log only
// (supervise.Fleet logs it): the reason is the app's exception, which may
// quote its configuration or environment.
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
		writeText(w, http.StatusInternalServerError, fmt.Sprintf("reload failed: see bridge's log; generation %d keeps serving\n", gen))
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
