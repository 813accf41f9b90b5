package front

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"bridge/bridge/request"
)

const (
	// maxRefusing bounds the connections being answered 503 at once; past
	// it, more are closed unanswered (a flood gets no goroutine each).
	maxRefusing = 64
	// refuseReadTimeout is how long a refused client may take to send its
	// request head, read only so that it sees the 503 rather than a reset.
	refuseReadTimeout = time.Second
)

// LimitListener accepts at most n connections open at once (n <= 0: no
// limit). A connection past the limit is handed to refuse, which answers
// 503 in the front's protocol and closes it, so a client learns at once
// that bridge is full instead of waiting in the kernel's accept queue.
func LimitListener(ln net.Listener, n int, refuse func(net.Conn)) net.Listener {
	if n <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), refusing: make(chan struct{}, maxRefusing), refuse: refuse}
}

type limitListener struct {
	net.Listener
	sem      chan struct{}
	refusing chan struct{}
	refuse   func(net.Conn)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
		}
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				l.refuse(c)
			}()
		default:
			c.Close()
		}
	}
}

// errOverLimit is the rejection of a connection past --max-connections.
func errOverLimit(n int) error {
	return request.Errorf(http.StatusServiceUnavailable, "too many connections", fmt.Errorf("--max-connections %d reached", n))
}

// remoteOf names a connection's peer for the log ("" on a unix socket,
// where nginx is the only peer).
func remoteOf(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// limitConn gives its place back once, however often it is closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ReadFrom keeps sendfile(2) for file bodies: io.Copy and net/http look for
// it on the connection.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) { return readFrom(c.Conn, r) }

// readFrom is ReadFrom for a connection wrapper: the inner connection's
// own (sendfile(2) for a file), else a plain copy that does not come back
// to the wrapper.
func readFrom(c net.Conn, r io.Reader) (int64, error) {
	if rf, ok := c.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}

// NetConn returns the connection underneath (abortConn needs the TCP one).
func (c *limitConn) NetConn() net.Conn { return c.Conn }
