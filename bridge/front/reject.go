package front

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/request"
)

// net/http answers some requests itself, before any handler runs: a
// malformed request line or header (400), a head over MaxHeaderBytes (431),
// an unknown transfer coding (501). It writes them straight to the
// connection in one write, in this exact shape, and calls nothing bridge
// could hook. rejectWatch spots that shape so that these requests too are
// logged and counted (early rejections are requests like any other).
//
// A handler's response cannot take the shape: net/http puts a Date header
// (or the app's headers) between the status line and the end of the head,
// and bridge drops an app's Connection header.
const (
	earlyErrorPrefix  = "HTTP/1.1 "
	earlyErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
)

// earlyStatus returns the status of a write that is net/http's own
// rejection, or 0.
func earlyStatus(p []byte) int {
	if !bytes.HasPrefix(p, []byte(earlyErrorPrefix)) || len(p) < len(earlyErrorPrefix)+3 {
		return 0
	}
	eol := bytes.Index(p, []byte("\r\n"))
	if eol < 0 || !bytes.HasPrefix(p[eol:], []byte(earlyErrorHeaders)) {
		return 0
	}
	code, err := strconv.Atoi(string(p[len(earlyErrorPrefix) : len(earlyErrorPrefix)+3]))
	if err != nil || code < 400 {
		return 0
	}
	return code
}

// rejectWatch wraps the HTTP front's connections to see net/http's early
// rejections.
type rejectWatch struct {
	net.Listener
	f *HTTP
}

func (l *rejectWatch) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, f: l.f}, nil
}

type watchedConn struct {
	net.Conn
	f *HTTP
}

func (c *watchedConn) Write(p []byte) (int, error) {
	if code := earlyStatus(p); code != 0 {
		c.f.h.Reject(nil, remoteOf(c.Conn), request.Errorf(code, "refused by the HTTP parser", nil))
	}
	return c.Conn.Write(p)
}

// ReadFrom keeps sendfile(2) for file bodies.
func (c *watchedConn) ReadFrom(r io.Reader) (int64, error) { return readFrom(c.Conn, r) }

// NetConn returns the connection underneath.
func (c *watchedConn) NetConn() net.Conn { return c.Conn }

// refuse answers a connection over the limit with 503 once its request
// head is in (or a second has passed), then closes it.
func (f *HTTP) refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(refuseReadTimeout))
	var buf [4096]byte
	_, _ = c.Read(buf[:])
	out := f.h.Reject(nil, remoteOf(c), errOverLimit(f.h.Limits.MaxConns))
	body := errorBody(out.Status)
	_ = c.SetWriteDeadline(time.Now().Add(refuseReadTimeout))
	_, _ = c.Write([]byte("HTTP/1.1 " + strconv.Itoa(out.Status) + " " + http.StatusText(out.Status) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + string(body)))
}

// httpErrorLog routes net/http's own messages (accept errors, a panic in
// a handler) into bridge's log instead of bare lines on stderr.
func httpErrorLog(l zerolog.Logger) *log.Logger {
	return log.New(zerologWriter{l}, "", 0)
}

type zerologWriter struct{ l zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.l.Warn().Str("source", "net/http").Msg(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
