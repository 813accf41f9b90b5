// Package request holds the canonical request that every front produces and
// the response sink every front implements, so dispatch never knows which
// protocol a request came in on.
package request

import (
	"errors"
	"io"
	"net/http"
	"time"

	bridgev1 "bridge/proto/bridge/v1"
)

// Request is one request as the runners see it: CGI variables plus a body.
type Request struct {
	// ID is the request id (from a well-formed X-Request-Id, else generated).
	ID string
	// Vars are the canonical CGI variables, in arrival order.
	Vars []*bridgev1.Var
	// Scheme is "http" or "https".
	Scheme string
	// ContentLength is the body length, or -1 when the body runs to EOF.
	ContentLength int64
	// Body streams the request body; nil when there is none. When Prefetched
	// holds the whole body, Body is nil.
	Body io.Reader
	// Prefetched is the start of the body, already read, sent in the first
	// frame so a small POST is one message.
	Prefetched []byte

	// Method and URI are kept for the access log.
	Method, URI string

	// Start is when the request's head had been read. Deadline is Start
	// plus the request timeout (zero: none): no wait of the request, on
	// the client or on the runner, runs past it.
	Start, Deadline time.Time
}

// ResponseWriter is what a front gives dispatch to write a response into.
// Calls come in order: WriteHead once, then Write/SendFile.
type ResponseWriter interface {
	// WriteHead commits the status line and headers.
	WriteHead(status int, reason string, headers []*bridgev1.Header) error
	// Write sends a body chunk and flushes it to the client: the app decides
	// the chunking (W23), so nothing is held back.
	Write(p []byte) error
	// SendFile sends n bytes of f from offset (n < 0: to EOF).
	SendFile(path string, offset, n int64) error
}

// Error is the one typed error that carries an HTTP status to the edge. Its
// message is for the log; clients only ever see the generic status text.
type Error struct {
	Status int
	Reason string // short log reason, e.g. "runner unavailable"
	Err    error
}

func (e *Error) Error() string {
	msg := http.StatusText(e.Status) + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error.
func Errorf(status int, reason string, err error) *Error {
	return &Error{Status: status, Reason: reason, Err: err}
}

// ErrAbort means the response head was sent but the body cannot be finished:
// the front must cut the connection so the client sees a truncated response.
var ErrAbort = errors.New("response aborted after head was sent")

// StatusOf returns the status an error maps to at the edge (500 when the
// error carries none).
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}
