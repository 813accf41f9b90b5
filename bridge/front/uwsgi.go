package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"bridge/bridge/request"
	"bridge/bridge/uwsgi"
	bridgev1 "bridge/proto/bridge/v1"
)

// Uwsgi is the uwsgi front (nginx uwsgi_pass): one request per connection,
// response as a raw HTTP/1.1 head and body, connection closed after it (U18).
type Uwsgi struct {
	H *Handler
	// ServerName is the fallback SERVER_NAME (U15).
	ServerName string
	// Modifiers are the packet modifier1 values served (U17): the caller
	// knows which interfaces its runner answers to (runners.AppModifiers).
	// Others get 500, as uWSGI answers a modifier it has no plugin for.
	Modifiers []uint8

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Serve accepts connections until ln is closed. It returns nil after Close.
//
// The goroutine that accepts a connection serves it, and a new acceptor is
// started only when no other goroutine is waiting in Accept; one that has
// served its connection goes back to Accept (or exits, past maxIdleAcceptors
// waiting). A goroutine per connection grew its stack from scratch for every
// request (runtime.newstack/copystack: 6% of bridge's CPU on hello at c=50).
func (u *Uwsgi) Serve(ctx context.Context, ln net.Listener) error {
	a := &acceptors{u: u, ctx: ctx, ln: ln, idle: 1, done: make(chan struct{})}
	go a.run()
	<-a.done
	return a.err
}

// maxIdleAcceptors bounds the goroutines left waiting in Accept after a
// burst of connections.
const maxIdleAcceptors = 16

type acceptors struct {
	u    *Uwsgi
	ctx  context.Context
	ln   net.Listener
	mu   sync.Mutex
	idle int // goroutines in Accept or on their way to it
	once sync.Once
	done chan struct{} // closed when the listener is closed or failed
	err  error
}

func (a *acceptors) stop(err error) {
	a.once.Do(func() { a.err = err; close(a.done) })
}

func (a *acceptors) run() {
	u := a.u
	for {
		select {
		case <-a.done: // Serve has returned: Accept failed for good
			return
		default:
		}
		c, err := a.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				a.stop(nil)
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			a.stop(err)
			return
		}
		u.track(c, true)
		u.wg.Add(1)
		a.mu.Lock()
		a.idle--
		more := a.idle == 0
		if more {
			a.idle++
		}
		a.mu.Unlock()
		if more {
			go a.run() // someone must be in Accept while this one serves
		}
		u.serveConn(a.ctx, c)
		u.track(c, false)
		u.wg.Done()
		a.mu.Lock()
		if a.idle >= maxIdleAcceptors {
			a.mu.Unlock()
			return
		}
		a.idle++
		a.mu.Unlock()
	}
}

func (u *Uwsgi) track(c net.Conn, add bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conns == nil {
		u.conns = map[net.Conn]struct{}{}
	}
	if add {
		u.conns[c] = struct{}{}
	} else {
		delete(u.conns, c)
	}
}

// Wait blocks until every connection being served has finished, or ctx ends;
// then it closes the stragglers.
func (u *Uwsgi) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		u.mu.Lock()
		for c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		<-done
	}
}

// Per-connection buffers are pooled: one request per connection would
// otherwise allocate them for every request.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

func (u *Uwsgi) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(defaultReadTimeout))
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()

	pkt, err := uwsgi.ReadPacket(br)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			u.H.Log.Warn().Err(err).Str("remote", c.RemoteAddr().String()).Msg("bad uwsgi packet; closing")
			writeUwsgiError(c, http.StatusBadRequest)
		}
		return
	}
	if !slices.Contains(u.Modifiers, pkt.Modifier1) {
		u.H.Log.Warn().Uint8("modifier1", pkt.Modifier1).Msg("unsupported uwsgi modifier1")
		writeUwsgiError(c, http.StatusInternalServerError)
		return
	}
	req, err := u.canonical(pkt)
	if err == nil {
		err = u.body(br, req)
	}
	if err != nil {
		u.H.Log.Warn().Err(err).Msg("bad uwsgi request")
		writeUwsgiError(c, request.StatusOf(err))
		return
	}
	_ = c.SetReadDeadline(time.Time{})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := &disconnectWatch{c: c, cancel: cancel}
	defer watch.stop()
	if req.Body == nil {
		watch.start()
	} else {
		req.Body = &eofHook{r: req.Body, fn: watch.start}
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		writerPool.Put(bw)
	}()
	w := &uwsgiWriter{c: c, bw: bw, h: u.H, head: req.Method == "HEAD"}
	err = u.H.Serve(ctx, req, w)
	var re *request.Error
	switch {
	case err == nil:
		_ = w.bw.Flush()
	case errors.As(err, &re) && !w.headSent:
		writeUwsgiError(c, re.Status)
	case errors.Is(err, request.ErrAbort):
		abortConn(c)
	}
}

// watchDelay is how long a request runs before bridge watches its
// connection for nginx going away. Most requests are over sooner: the
// pending read (a timer, a goroutine, a read syscall, a poller
// registration and a wake-up at close) cost 8% of bridge's CPU on a hello
// benchmark at c=1, and 13% at c=50 with 2 ms, where queueing makes most
// requests last longer than that. 50 ms: Go 110-124 -> 108-117 us per
// request, alternating runs. A client that leaves is noticed 50 ms later
// at most, which matters only for requests that run much longer.
const watchDelay = 50 * time.Millisecond

// disconnectWatch keeps a read pending once the body is consumed: nginx
// closes the upstream connection when its client goes away (U24).
type disconnectWatch struct {
	c      net.Conn
	cancel context.CancelFunc
	mu     sync.Mutex
	timer  *time.Timer
	done   bool
}

func (d *disconnectWatch) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.timer != nil {
		return
	}
	d.timer = time.AfterFunc(watchDelay, func() {
		var b [1]byte
		_, _ = d.c.Read(b[:])
		d.cancel()
	})
}

// stop is called when the exchange is over; a read already pending ends
// when the connection closes.
func (d *disconnectWatch) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
	if d.timer != nil {
		d.timer.Stop()
	}
}

// eofHook calls fn once when the body reader reaches its end.
type eofHook struct {
	r    io.Reader
	fn   func()
	done bool
}

func (e *eofHook) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !e.done {
		e.done = true
		e.fn()
	}
	return n, err
}

// abortConn cuts a connection so nginx sees an error, not a clean end: RST
// on TCP (U20). Over a unix socket a close is all there is.
func abortConn(c net.Conn) {
	inner := c
	if lc, ok := c.(interface{ NetConn() net.Conn }); ok {
		inner = lc.NetConn()
	}
	if tc, ok := inner.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func writeUwsgiError(c net.Conn, status int) {
	body := errorBody(status)
	hdr := []uwsgi.Header{
		{Name: []byte("Content-Type"), Value: []byte("text/plain; charset=utf-8")},
		{Name: []byte("Content-Length"), Value: strconv.AppendInt(nil, int64(len(body)), 10)},
	}
	if status == http.StatusServiceUnavailable {
		hdr = append(hdr, uwsgi.Header{Name: []byte("Retry-After"), Value: []byte("1")})
	}
	out := uwsgi.AppendResponseHead(nil, status, http.StatusText(status), hdr)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(append(out, body...))
}

// body prepares the request body: exactly CONTENT_LENGTH bytes after the
// vars (U9). Small bodies are read now so the request is one message.
func (u *Uwsgi) body(br *bufio.Reader, req *request.Request) error {
	n := req.ContentLength
	switch {
	case n == 0:
	case n > u.H.MaxBody:
		return request.Errorf(http.StatusRequestEntityTooLarge, "request body too large", fmt.Errorf("content-length %d > %d", n, u.H.MaxBody))
	case n <= prefetchMax:
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return request.Errorf(http.StatusBadRequest, "short request body", err)
		}
		req.Prefetched = buf
	default:
		req.Body = io.LimitReader(br, n)
	}
	return nil
}

// uwsgiWriter writes the response in the uwsgi front's framing. The head
// stays in the buffer until the first chunk, so a small response is one
// write.
type uwsgiWriter struct {
	c        net.Conn
	bw       *bufio.Writer
	h        *Handler
	headSent bool
	head     bool // HEAD request: nginx reads to close, so no body at all (U23)
	scratch  []uwsgi.Header
}

// headWarn is nginx's default uwsgi_buffer_size: a bigger head gets 502 (U19).
const headWarn = 4096

func (w *uwsgiWriter) WriteHead(status int, reason string, headers []*bridgev1.Header) error {
	w.headSent = true
	w.scratch = w.scratch[:0]
	for _, h := range headers {
		w.scratch = append(w.scratch, uwsgi.Header{Name: h.Name, Value: h.Value})
	}
	head := uwsgi.AppendResponseHead(w.bw.AvailableBuffer(), status, reason, w.scratch)
	if len(head) > headWarn {
		w.h.Log.Warn().Int("bytes", len(head)).Msg("response head exceeds nginx's default uwsgi_buffer_size (4096); nginx may answer 502")
	}
	_, err := w.bw.Write(head)
	return err
}

func (w *uwsgiWriter) Write(p []byte) error {
	if w.head {
		return nil
	}
	if _, err := w.bw.Write(p); err != nil {
		return err
	}
	return w.bw.Flush()
}

func (w *uwsgiWriter) SendFile(path string, offset, n int64) error {
	if w.head {
		return nil
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	f, body, err := openRegion(path, offset, n)
	if err != nil {
		return err
	}
	defer f.Close()
	// net.Conn's ReadFrom uses sendfile(2) for a file source.
	_, err = io.Copy(w.c, body)
	return err
}
