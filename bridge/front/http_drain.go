package front

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// net/http drops a request it reads once Shutdown has begun: it closes the
// connection without an answer (server.go, conn.serve: "if
// c.server.shuttingDown() { return }"). A client that connected in the
// instant before the listener closed, as happens under load on every
// SIGTERM and on a socket-activated restart, would get EOF on a fresh
// connection, which clients do not retry. So the HTTP front drains in
// two steps: keep-alive off (each connection closes after its current
// response, idle ones at once), then wait until no connection is new or
// active; only then Shutdown, which finds nothing left to drop.

// newConnWait is how long Drain waits for connections that have sent no
// request yet: net/http's Shutdown gives them the same 5 s.
const newConnWait = 5 * time.Second

// connStates holds the state of each of the HTTP front's open
// connections; Drain asks it whether any may still bring a request.
type connStates struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

// hook is http.Server.ConnState.
func (s *connStates) hook(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		s.state = map[net.Conn]http.ConnState{}
	}
	if st == http.StateClosed || st == http.StateHijacked {
		delete(s.state, c)
		return
	}
	s.state[c] = st
}

// quiet reports whether no request may still come: no connection active,
// and none new (no request read yet) unless waitNew is over.
func (s *connStates) quiet(waitNew bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.state {
		if st == http.StateActive || (st == http.StateNew && waitNew) {
			return false
		}
	}
	return true
}

// Drain closes idle connections, waits for active ones, and cuts what
// still runs when ctx ends. The listeners must be closed first.
func (f *HTTP) Drain(ctx context.Context) {
	f.serving.Wait() // every connection accepted is now in f.conns
	f.srv.SetKeepAlivesEnabled(false)
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !f.conns.quiet(time.Since(start) < newConnWait) {
		select {
		case <-ctx.Done():
			f.srv.Close()
			return
		case <-tick.C:
		}
	}
	if err := f.srv.Shutdown(ctx); err != nil {
		f.srv.Close()
	}
}
