package front

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/request"
)

// Handler is what every front shares: it reads a canonical request's body,
// runs the request on a slot under its deadline, classifies how it ended
// and writes one access log line.
type Handler struct {
	Pool   *dispatch.Pool
	Log    zerolog.Logger
	Runner string // runner spec, for the access log and metrics (see SetRunner)
	Limits Limits
	// Begin, if set, is called when a request arrives; the func it returns
	// is called with the outcome (metrics).
	Begin func() func(runner string, status int, d time.Duration)

	reloaded atomic.Pointer[string] // the spec a reload switched to, if any
}

// SetRunner names the runner spec that serves from now on (a reload may
// change it); Runner is the one before any reload.
func (h *Handler) SetRunner(spec string) { h.reloaded.Store(&spec) }

func (h *Handler) runnerSpec() string {
	if p := h.reloaded.Load(); p != nil {
		return *p
	}
	return h.Runner
}

// maxAttempts bounds how often a request that no runner saw is re-dispatched;
// maxLostAttempts how often one that a runner may have seen is (see retry).
const (
	maxAttempts     = 3
	maxLostAttempts = 2
)

// retry decides whether a request that failed on its attempt-th slot goes
// to another. One that never reached a runner (its worker had just died)
// always may. One whose runner connection broke before any answer came
// back may have been seen by the app: like nginx's proxy_next_upstream, it
// is tried once more only if its method is idempotent (RFC 9110 9.2.2),
// so that a GET sent to a runner in the instant it was killed succeeds,
// while a POST is never run twice. A request that kills every runner it
// reaches thus costs two runners at most. The body was read whole before
// dispatch, so it can be sent again (rewind).
func retry(ctx context.Context, req *request.Request, err error, res dispatch.Result, attempt int) bool {
	switch {
	case err == nil || res.HeadSent || ctx.Err() != nil:
		return false
	case errors.Is(err, dispatch.ErrNotDelivered):
		return attempt < maxAttempts
	case errors.Is(err, dispatch.ErrRunnerLost):
		return attempt < maxLostAttempts && idempotent(req.Method)
	}
	return false
}

// idempotent reports whether a method may be repeated with the same effect
// (RFC 9110 9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// start stamps a request whose head has just been read: its start and
// deadline, and its place in the in-flight count.
func (h *Handler) start(req *request.Request) func(string, int, time.Duration) {
	if req.Start.IsZero() {
		req.Start = time.Now()
	}
	if h.Limits.Timeout > 0 && req.Deadline.IsZero() {
		req.Deadline = req.Start.Add(h.Limits.Timeout)
	}
	if h.Begin != nil {
		return h.Begin()
	}
	return nil
}

// Serve reads req's body (before any slot is taken: a slow upload holds a
// connection, never a runner), runs req and logs it. The front acts on the
// outcome: Reply means nothing was written and it must answer Status; Cut
// means the response is incomplete and the connection must be cut.
func (h *Handler) Serve(ctx context.Context, req *request.Request, rw request.ResponseWriter) request.Outcome {
	done := h.start(req)
	log := h.Log.With().Str("req_id", req.ID).Logger()
	held, err := h.readBody(req)
	if held != nil {
		defer held.Close()
	}
	if err != nil {
		// The client's fault and before any deadline of the app's: never
		// a 504.
		return h.finish(log, req, done, request.Classify(err, nil, 0), err, dispatch.Result{}, "")
	}
	if !req.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		defer cancel()
	}
	var res dispatch.Result
	worker := ""
	slot, err := h.Pool.Acquire(ctx)
	for attempt := 1; err == nil; attempt++ {
		worker = slot.Worker().Name
		res, err = slot.Exchange(ctx, req, rw, log)
		h.Pool.Release(slot)
		if !retry(ctx, req, err, res, attempt) {
			break
		}
		log.Warn().Err(err).Str("worker", worker).Msg("runner unavailable; retrying on another slot")
		rewind(req)
		slot, err = h.Pool.Acquire(ctx)
	}
	sent := 0
	if res.HeadSent {
		sent = res.Status
	}
	return h.finish(log, req, done, request.Classify(err, ctx.Err(), sent), err, res, worker)
}

// Reject answers a request refused before it could be served (a malformed
// head, too many headers, over the connection limit): it is logged and
// counted like any other. req may hold only what was parsed; nil is fine.
func (h *Handler) Reject(req *request.Request, remote string, err error) request.Outcome {
	if req == nil {
		req = &request.Request{ID: requestID(nil)}
	}
	done := h.start(req)
	log := h.Log.With().Str("req_id", req.ID).Str("remote", remote).Logger()
	return h.finish(log, req, done, request.Classify(err, nil, 0), err, dispatch.Result{}, "")
}

// finish writes the access log line and the metrics of one request.
func (h *Handler) finish(log zerolog.Logger, req *request.Request, done func(string, int, time.Duration), out request.Outcome, err error, res dispatch.Result, worker string) request.Outcome {
	d := time.Since(req.Start)
	if done != nil {
		done(h.runnerSpec(), out.Status, d)
	}
	ev := log.Info()
	switch {
	case out.Failed && out.Cut:
		ev = log.Warn()
		if !errors.Is(err, request.ErrAbort) {
			ev = ev.Err(err)
		}
	case out.Failed:
		ev = log.Warn().Err(err)
	}
	ev.Str("method", req.Method).Str("uri", req.URI).Int("status", out.Status).
		Int64("bytes", res.Bytes).Float64("duration_ms", float64(d.Microseconds())/1000).
		Str("worker", worker).Str("runner", h.runnerSpec()).Bool("aborted", out.Cut).
		Msg("request")
	return out
}

// errorBody is the generic body for a status bridge answers itself. No app
// or runner text ever goes here.
func errorBody(status int) []byte {
	return []byte(http.StatusText(status) + "\n")
}
