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

// connStates counts the HTTP front's connections that may still bring a
// request: new (no request read yet) and active.
type connStates struct {
	mu        sync.Mutex
	state     map[net.Conn]http.ConnState
	newConns  int
	activeNow int
}

// hook is http.Server.ConnState.
func (s *connStates) hook(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		s.state = map[net.Conn]http.ConnState{}
	}
	if prev, ok := s.state[c]; ok {
		s.count(prev, -1)
	}
	if st == http.StateClosed || st == http.StateHijacked {
		delete(s.state, c)
		return
	}
	s.state[c] = st
	s.count(st, 1)
}

func (s *connStates) count(st http.ConnState, d int) {
	switch st {
	case http.StateNew:
		s.newConns += d
	case http.StateActive:
		s.activeNow += d
	}
}

// quiet reports whether no request may still come: nothing active, and
// nothing new unless waitNew is over.
func (s *connStates) quiet(waitNew bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeNow == 0 && (s.newConns == 0 || !waitNew)
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
