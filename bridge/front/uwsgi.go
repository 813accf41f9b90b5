package front

import (
	"bufio"
	"bytes"
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
	cfg Config
	h   *Handler

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewUwsgi returns the uwsgi front.
func NewUwsgi(c Config) *Uwsgi {
	if c.Base == nil {
		c.Base = context.Background()
	}
	return &Uwsgi{cfg: c, h: c.Handler}
}

// Listen opens addr; past the connection limit a client gets 503.
func (u *Uwsgi) Listen(addr string) (net.Listener, error) {
	ln, err := Listen(addr, u.cfg.Socket)
	if err != nil {
		return nil, err
	}
	return LimitListener(ln, u.h.Limits.MaxConns, u.refuse), nil
}

// refuse answers a connection over the limit: its packet is read (briefly)
// so that nginx sees the answer rather than a reset, then 503.
func (u *Uwsgi) refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(refuseReadTimeout))
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	_, _ = uwsgi.ReadPacket(br)
	br.Reset(nil)
	readerPool.Put(br)
	u.reject(c, nil, errOverLimit(u.h.Limits.MaxConns))
}

// Serve accepts connections until ln is closed. It returns nil after Close.
//
// The goroutine that accepts a connection serves it, and a new acceptor is
// started only when no other goroutine is waiting in Accept; one that has
// served its connection goes back to Accept (or exits, past maxIdleAcceptors
// waiting). A goroutine per connection grew its stack from scratch for every
// request (runtime.newstack/copystack: 6% of bridge's CPU on hello at c=50).
func (u *Uwsgi) Serve(ln net.Listener) error {
	a := &acceptors{u: u, ctx: u.cfg.Base, ln: ln, idle: 1, done: make(chan struct{})}
	u.wg.Add(1)
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

// run is one acceptor. It holds a count of u.wg from before it starts
// until it exits, serving included, so Drain (which comes after the
// listener is closed) also waits for a connection accepted in the instant
// before the close and not yet being served: a restart under load drops
// nothing.
func (a *acceptors) run() {
	u := a.u
	defer u.wg.Done()
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
		a.mu.Lock()
		a.idle--
		more := a.idle == 0
		if more {
			a.idle++
		}
		a.mu.Unlock()
		if more {
			u.wg.Add(1)
			go a.run() // someone must be in Accept while this one serves
		}
		u.serveConn(a.ctx, c)
		u.track(c, false)
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

// Drain blocks until every connection being served has finished, or ctx
// ends; then it closes the stragglers. The listeners must be closed first.
func (u *Uwsgi) Drain(ctx context.Context) {
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
	lim := &u.h.Limits
	if lim.HeaderTimeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(lim.HeaderTimeout))
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()

	pkt, err := uwsgi.ReadPacket(br)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			u.reject(c, nil, request.Errorf(http.StatusBadRequest, "bad uwsgi packet", err))
		}
		return
	}
	start := time.Now()
	if !slices.Contains(u.cfg.Modifiers, pkt.Modifier1) {
		u.reject(c, nil, request.Errorf(http.StatusInternalServerError, "unsupported uwsgi modifier1", fmt.Errorf("modifier1 %d", pkt.Modifier1)))
		return
	}
	if err := u.checkHead(pkt); err != nil {
		u.reject(c, nil, err)
		return
	}
	req, err := u.canonical(pkt)
	if err != nil {
		u.reject(c, req, err)
		return
	}
	req.Start = start

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := &disconnectWatch{c: c, cancel: cancel}
	defer watch.stop()
	// Once the body is in, no read deadline may stay behind: the
	// disconnect watch reads with none.
	bodyDone := func() {
		_ = c.SetReadDeadline(time.Time{})
		watch.start()
	}
	if req.ContentLength == 0 {
		bodyDone()
	} else {
		raw := &progressReader{r: io.LimitReader(br, req.ContentLength), set: c.SetReadDeadline, every: lim.BodyTimeout, req: req}
		req.Body = &countHook{r: raw, left: req.ContentLength, fn: bodyDone}
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		writerPool.Put(bw)
	}()
	w := &uwsgiWriter{c: c, bw: bw, h: u.h, req: req, head: req.Method == "HEAD"}
	out := u.h.Serve(ctx, req, w)
	switch {
	case out.Reply:
		writeUwsgiError(c, out.Status)
	case out.Cut:
		abortConn(c)
	default:
		if err := w.flush(); err != nil {
			u.h.Log.Warn().Err(err).Str("req_id", req.ID).Msg("writing the end of the response failed")
		}
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

// reject logs, counts and answers a request refused before it could be
// served.
func (u *Uwsgi) reject(c net.Conn, req *request.Request, err error) {
	writeUwsgiError(c, u.h.Reject(req, remoteOf(c), err).Status)
}

// checkHead applies the header limits to a packet's vars: the count of
// HTTP_ vars (the request's header fields) and the size of the var block.
func (u *Uwsgi) checkHead(pkt *uwsgi.Packet) error {
	lim := &u.h.Limits
	headers, size := 0, 0
	for _, v := range pkt.Vars {
		if bytes.HasPrefix(v.Name, []byte("HTTP_")) {
			headers++
		}
		size += 4 + len(v.Name) + len(v.Value)
	}
	switch {
	case lim.MaxHeaders > 0 && headers > lim.MaxHeaders:
		return request.Errorf(http.StatusRequestHeaderFieldsTooLarge, "too many header fields", fmt.Errorf("%d > --max-headers %d", headers, lim.MaxHeaders))
	case lim.MaxHeaderSize > 0 && size > lim.MaxHeaderSize:
		return request.Errorf(http.StatusRequestHeaderFieldsTooLarge, "request head too large", fmt.Errorf("%d bytes of vars > --max-header-size %d", size, lim.MaxHeaderSize))
	}
	return nil
}

// countHook calls fn once the body's last byte has been read: the body is
// read exactly to its length, so its EOF may never be asked for.
type countHook struct {
	r    io.Reader
	left int64
	fn   func()
}

func (h *countHook) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if h.left > 0 {
		h.left -= int64(n)
		if h.left <= 0 || err != nil {
			h.left = 0
			h.fn()
		}
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

// uwsgiWriter writes the response in the uwsgi front's framing. The head
// stays in the buffer until the first chunk, so a small response is one
// write.
type uwsgiWriter struct {
	c        net.Conn
	bw       *bufio.Writer
	h        *Handler
	req      *request.Request
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
	// Armed before the copy into the buffer: a chunk bigger than the
	// buffer is written through at once.
	w.arm()
	if _, err := w.bw.Write(p); err != nil {
		return err
	}
	return w.bw.Flush()
}

// arm sets the write deadline for the writes that follow: a client (or
// an nginx with its buffers full) that stops reading is cut after the
// write timeout, and the request's slot freed, instead of holding it for
// as long as it keeps the connection open.
func (w *uwsgiWriter) arm() {
	_ = w.c.SetWriteDeadline(until(w.h.Limits.WriteTimeout, w.req.Deadline))
}

// flush writes what is buffered, under a write deadline.
func (w *uwsgiWriter) flush() error {
	if w.bw.Buffered() == 0 {
		return nil
	}
	w.arm()
	return w.bw.Flush()
}

func (w *uwsgiWriter) SendFile(path string, offset, n int64) error {
	if w.head {
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	f, body, err := openRegion(path, offset, n)
	if err != nil {
		return err
	}
	defer f.Close()
	return copyWithDeadlines(w.c, body, w.arm)
}
