package request

import (
	"context"
	"errors"
	"net/http"
)

// ErrClientGone means the client went away (or stopped reading) while its
// request ran; the app was cancelled. It is not an app or bridge failure.
var ErrClientGone = errors.New("client went away")

// StatusClientGone is what the access log and metrics record for a client
// that left before its response was complete: nginx's 499.
const StatusClientGone = 499

// Outcome is how a request ended, decided in one place (Classify) for every
// front, the access log and the metrics.
type Outcome struct {
	// Status is the status the client got, or must get when Reply is set;
	// StatusClientGone when it left.
	Status int
	// Reply: nothing was sent yet, and the front answers Status with
	// bridge's generic body.
	Reply bool
	// Cut: the head went out but the body cannot be completed; the front
	// cuts the connection so the client cannot take the response as whole
	// (G3).
	Cut bool
	// Failed marks outcomes worth a warning in the log: bridge or the app
	// failed, as opposed to a client that left.
	Failed bool
}

// Classify maps how a request ended to its outcome. err is what serving it
// returned; ctxErr is its context's error (deadline passed, or cancelled
// because the client went away); sent is the status already written to
// the client, 0 when nothing was.
func Classify(err, ctxErr error, sent int) Outcome {
	if err == nil {
		return Outcome{Status: sent}
	}
	var re *Error
	switch {
	case errors.Is(err, ErrClientGone) || (ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded)):
		return Outcome{Status: StatusClientGone, Cut: sent != 0}
	case sent != 0:
		// Whatever broke after the head (deadline, runner gone, app
		// error), the client must see a cut response, not a short one.
		return Outcome{Status: sent, Cut: true, Failed: true}
	case errors.Is(ctxErr, context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		// Before the error's own status: a runner stream cut by the
		// deadline reports itself as unavailable (502).
		return Outcome{Status: http.StatusGatewayTimeout, Reply: true, Failed: true}
	case errors.As(err, &re):
		return Outcome{Status: re.Status, Reply: true, Failed: true}
	default:
		return Outcome{Status: http.StatusInternalServerError, Reply: true, Failed: true}
	}
}
