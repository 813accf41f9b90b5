package front

import (
	"context"
	"net"
	"time"
)

// Front is one kind of listener: it opens its sockets, serves its protocol
// on them, and drains. serve builds every front from Kinds, so a new
// protocol is a new entry there, not a new branch in the CLI.
type Front interface {
	// Listen opens addr ("unix:/path" or "host:port") with the front's
	// connection limit: past it, a client gets 503 in the front's protocol.
	Listen(addr string) (net.Listener, error)
	// Serve answers connections on ln until ln is closed; it returns nil
	// then.
	Serve(ln net.Listener) error
	// Drain waits for the requests in flight once the listeners are
	// closed, and cuts those still running when ctx ends.
	Drain(ctx context.Context)
}

// Config is what every front is built from.
type Config struct {
	Handler *Handler
	// ServerName is SERVER_NAME for requests that name no host (U15).
	ServerName string
	// Modifiers are the uwsgi packet modifier1 values served (U17): the
	// caller knows which interfaces its runner answers to
	// (runners.AppModifiers). Others get 500, as uWSGI answers a modifier
	// it has no plugin for.
	Modifiers []uint8
	// Base is the context requests run under: it outlives a shutdown
	// signal and ends when the grace period is over.
	Base context.Context
	// Socket is the mode and group of unix sockets the front creates.
	Socket ListenConfig
}

// Kinds maps a front kind, as named by its flag (--uwsgi, --http), to its
// constructor.
var Kinds = map[string]func(Config) Front{
	"uwsgi": func(c Config) Front { return NewUwsgi(c) },
	"http":  func(c Config) Front { return NewHTTP(c) },
}

// Limits bound what one client can cost: every wait has a deadline and
// every size a cap (docs/security.md).
type Limits struct {
	// Timeout is the whole request's deadline (0: none); the other waits
	// never run past it.
	Timeout time.Duration
	// HeaderTimeout bounds reading a request's head, and an idle
	// keep-alive connection's wait for the next one.
	HeaderTimeout time.Duration
	// BodyTimeout is the longest a request body may make no progress.
	BodyTimeout time.Duration
	// WriteTimeout is the longest one write to the client may block.
	WriteTimeout time.Duration
	// MaxHeaders and MaxHeaderSize cap a request's header fields and its
	// head in bytes (431 beyond).
	MaxHeaders    int
	MaxHeaderSize int
	// MaxBody caps a request body (413 beyond).
	MaxBody int64
	// MaxConns caps open connections per listener (0: no cap).
	MaxConns int
}

// DefaultLimits are bridge serve's defaults; tests start from them.
func DefaultLimits() Limits {
	return Limits{
		Timeout: 60 * time.Second, HeaderTimeout: 30 * time.Second, BodyTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaders: 100, MaxHeaderSize: 64 << 10, MaxBody: 1 << 30,
	}
}

// until is when a wait that starts now must end: d from now, and never
// later than the request's own deadline.
func until(d time.Duration, deadline time.Time) time.Time {
	t := time.Now().Add(d)
	if d <= 0 {
		t = time.Time{}
	}
	if !deadline.IsZero() && (t.IsZero() || deadline.Before(t)) {
		t = deadline
	}
	return t
}
