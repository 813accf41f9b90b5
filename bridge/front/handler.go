package front

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/request"
)

// Handler is what every front shares: it runs a canonical request on a slot
// under the request timeout and writes one access log line.
type Handler struct {
	Pool    *dispatch.Pool
	Log     zerolog.Logger
	Runner  string        // runner spec, for the access log
	Timeout time.Duration // per request; 0 = none
	MaxBody int64         // request body limit in bytes (G6)
	// Begin, if set, is called when a request arrives; the func it returns
	// is called with the outcome (metrics).
	Begin func() func(runner string, status int, d time.Duration)
}

// maxAttempts bounds how often a request that no runner saw is re-dispatched.
const maxAttempts = 3

// Serve runs req. The returned error is nil, request.ErrAbort,
// dispatch.ErrClientGone, or a *request.Error whose status the front must
// answer with (nothing has been written then).
func (h *Handler) Serve(ctx context.Context, req *request.Request, rw request.ResponseWriter) error {
	start := time.Now()
	log := h.Log.With().Str("req_id", req.ID).Logger()
	var done func(string, int, time.Duration)
	if h.Begin != nil {
		done = h.Begin()
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	var res dispatch.Result
	worker := ""
	slot, err := h.Pool.Acquire(ctx)
	// A request that never reached a runner (its worker had just died) is
	// tried on other slots; anything the app may have seen is not retried.
	for attempt := 0; err == nil; attempt++ {
		worker = slot.Worker().Name
		res, err = slot.Exchange(ctx, req, rw, log)
		h.Pool.Release(slot)
		if !errors.Is(err, dispatch.ErrNotDelivered) || attempt == maxAttempts-1 {
			break
		}
		log.Warn().Err(err).Str("worker", worker).Msg("runner unavailable; retrying on another slot")
		slot, err = h.Pool.Acquire(ctx)
	}
	if err != nil && slot == nil && ctx.Err() != nil && !errors.Is(err, dispatch.ErrNoWorkers) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = request.Errorf(http.StatusGatewayTimeout, "timed out waiting for a worker", err)
		} else {
			err = dispatch.ErrClientGone
		}
	}
	status := res.Status
	if !res.HeadSent {
		var re *request.Error
		if errors.As(err, &re) {
			status = re.Status
		}
	}
	ev := log.Info()
	switch {
	case errors.Is(err, dispatch.ErrClientGone):
		status = 499 // nginx's code for "client closed request"
	case errors.Is(err, request.ErrAbort):
		ev = log.Warn()
	case err != nil:
		ev = log.Warn().Err(err)
	}
	if done != nil {
		done(h.Runner, status, time.Since(start))
	}
	ev.Str("method", req.Method).Str("uri", req.URI).Int("status", status).
		Int64("bytes", res.Bytes).Float64("duration_ms", float64(time.Since(start).Microseconds())/1000).
		Str("worker", worker).Str("runner", h.Runner).Bool("aborted", errors.Is(err, request.ErrAbort)).
		Msg("request")
	return err
}

// errorBody is the generic body for a status bridge answers itself. No app
// or runner text ever goes here.
func errorBody(status int) []byte {
	return []byte(http.StatusText(status) + "\n")
}
