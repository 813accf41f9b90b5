package front

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"bridge/bridge/request"
	bridgev1 "bridge/proto/bridge/v1"
)

// HTTP is the HTTP/1.1 front: a net/http handler that builds the canonical
// request from *http.Request (docs/conformance.md H1–H25).
type HTTP struct {
	cfg     Config
	h       *Handler
	srv     *http.Server
	conns   connStates     // for Drain (http_drain.go)
	serving sync.WaitGroup // Serve calls running
}

// NewHTTP returns the HTTP front, with its http.Server.
func NewHTTP(c Config) *HTTP {
	if c.Base == nil {
		c.Base = context.Background()
	}
	f := &HTTP{cfg: c, h: c.Handler}
	lim := &f.h.Limits
	f.srv = &http.Server{
		Handler:           f,
		ReadHeaderTimeout: lim.HeaderTimeout,
		IdleTimeout:       defaultIdleTimeout,
		// net/http refuses a bigger head with its own 431, which the
		// early-rejection watch logs and counts (reject.go).
		MaxHeaderBytes: lim.MaxHeaderSize,
		BaseContext:    func(net.Listener) context.Context { return c.Base },
		ErrorLog:       httpErrorLog(f.h.Log),
		ConnState:      f.conns.hook,
	}
	return f
}

// Listen opens addr; past the connection limit a client gets 503.
func (f *HTTP) Listen(addr string) (net.Listener, error) {
	ln, err := Listen(addr, f.cfg.Socket)
	if err != nil {
		return nil, err
	}
	return &rejectWatch{Listener: LimitListener(ln, f.h.Limits.MaxConns, f.refuse), f: f}, nil
}

// Serve answers HTTP/1.1 on ln until ln is closed. Closing ln is how a
// drain begins (before Drain shuts the server down), so that is no failure.
func (f *HTTP) Serve(ln net.Listener) error {
	f.serving.Add(1)
	defer f.serving.Done()
	if err := f.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (f *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, err := f.canonical(r)
	if err != nil {
		writeHTTPError(w, f.h.Reject(req, r.RemoteAddr, err).Status)
		return
	}
	req.Start = start
	rc := http.NewResponseController(w)
	if len(r.TransferEncoding) > 0 {
		// A chunked request may also have carried a Content-Length, which
		// net/http removes before we see it; RFC 9112 §6.1 wants the
		// connection closed after such a request, in case the two
		// disagreed about where it ended. Chunked uploads are rare.
		w.Header().Set("Connection", "close")
	}
	if req.ContentLength != 0 {
		req.Body = &progressReader{r: r.Body, set: rc.SetReadDeadline, every: f.h.Limits.BodyTimeout, req: req}
	}
	hw := &httpWriter{w: w, rc: rc, h: f.h, req: req}
	out := f.h.Serve(r.Context(), req, hw)
	switch {
	case out.Reply:
		writeHTTPError(w, out.Status)
	case out.Cut:
		// Head sent, body incomplete: cut the connection so the client
		// cannot mistake this for a complete response (G3).
		panic(http.ErrAbortHandler)
	}
}

func writeHTTPError(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	body := errorBody(status)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// canonical builds the request's CGI variables and body.
func (f *HTTP) canonical(r *http.Request) (*request.Request, error) {
	if err := f.checkHeaders(r); err != nil {
		return nil, err
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	l := newVarList(16 + len(r.Header))
	l.set("REQUEST_METHOD", []byte(r.Method))
	l.set("SCRIPT_NAME", nil)
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	l.set("PATH_INFO", []byte(path))
	l.set("QUERY_STRING", []byte(r.URL.RawQuery))
	l.set("REQUEST_URI", []byte(r.RequestURI))
	l.set("SERVER_PROTOCOL", []byte(r.Proto))

	host, port := hostPort(r.Host)
	if host == "" {
		host = f.cfg.ServerName
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && host == "" {
			host, port = hostPort(la.String())
		}
	}
	if port == "" {
		port = defaultPort(scheme)
	}
	l.set("SERVER_NAME", []byte(host))
	l.set("SERVER_PORT", []byte(port))
	if ra, rp, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		l.set("REMOTE_ADDR", []byte(ra))
		l.set("REMOTE_PORT", []byte(rp))
	}
	if scheme == "https" {
		l.set("HTTPS", []byte("on"))
	}
	l.set("REQUEST_SCHEME", []byte(scheme))
	if ct := r.Header.Get("Content-Type"); ct != "" {
		l.set("CONTENT_TYPE", []byte(ct))
	}
	if r.Host != "" {
		l.set("HTTP_HOST", []byte(r.Host))
	}
	addHeaders(l, r.Header)

	req := &request.Request{
		ID:     requestID([]byte(r.Header.Get("X-Request-Id"))),
		Scheme: scheme,
		Method: r.Method,
		URI:    r.RequestURI,
	}
	switch n := r.ContentLength; {
	case r.Body == nil || r.Body == http.NoBody || n == 0:
	case n > 0:
		// The var is set now; a chunked body's length is known only once
		// it is read (readBody), when it is set through req.
		req.ContentLength = n
		l.set("CONTENT_LENGTH", strconv.AppendInt(nil, n, 10))
	default:
		req.ContentLength = -1 // chunked: readBody sets CONTENT_LENGTH
	}
	req.Vars = l.vars
	return req, nil
}

// checkHeaders applies --max-headers and --max-header-size. net/http
// caps the head only near the size (it allows 4 KiB of slack, and answers
// beyond that itself) and not the field count at all.
func (f *HTTP) checkHeaders(r *http.Request) error {
	lim := &f.h.Limits
	n, size := 0, len(r.Method)+len(r.RequestURI)+len(r.Proto)+4+len(r.Host)+8
	for k, vs := range r.Header {
		n += len(vs)
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	switch {
	case lim.MaxHeaders > 0 && n > lim.MaxHeaders:
		return request.Errorf(http.StatusRequestHeaderFieldsTooLarge, "too many header fields", fmt.Errorf("%d > --max-headers %d", n, lim.MaxHeaders))
	case lim.MaxHeaderSize > 0 && size > lim.MaxHeaderSize:
		return request.Errorf(http.StatusRequestHeaderFieldsTooLarge, "request head too large", fmt.Errorf("%d bytes > --max-header-size %d", size, lim.MaxHeaderSize))
	}
	return nil
}

// addHeaders maps request headers to HTTP_* in a stable (sorted) order, since
// Go's header map keeps none. Names with "_" are dropped as nginx does (H4):
// otherwise X_Forwarded_For could pose as X-Forwarded-For.
func addHeaders(l *varList, hdr http.Header) {
	names := make([]string, 0, len(hdr))
	for k := range hdr {
		switch k {
		case "Content-Type", "Content-Length", "Host", "Transfer-Encoding":
			continue
		}
		if strings.IndexByte(k, '_') >= 0 {
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		name := make([]byte, 0, 5+len(k))
		name = append(name, "HTTP_"...)
		for i := 0; i < len(k); i++ {
			c := k[i]
			switch {
			case c == '-':
				c = '_'
			case c >= 'a' && c <= 'z':
				c -= 'a' - 'A'
			}
			name = append(name, c)
		}
		for _, v := range hdr[k] {
			l.add(name, []byte(v))
		}
	}
}

// httpWriter adapts http.ResponseWriter to request.ResponseWriter.
type httpWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController // made once: every chunk is flushed (W23)
	h   *Handler
	req *request.Request
}

func (hw *httpWriter) WriteHead(status int, _ string, headers []*bridgev1.Header) error {
	h := hw.w.Header()
	for _, kv := range headers {
		// Assign to the map directly: Add would canonicalize the name; the
		// app's spelling is kept as given. But net/http acts on the two
		// framing headers only under their canonical keys: a Rack 3
		// "content-length" would otherwise go out beside a chunked body,
		// and a "content-type" beside a sniffed one.
		k := string(kv.Name)
		if c := http.CanonicalHeaderKey(k); c == "Content-Length" || c == "Content-Type" {
			k = c
		}
		h[k] = append(h[k], string(kv.Value))
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // present but empty: stops Go's sniffing (H12)
	}
	hw.w.WriteHeader(status)
	return nil
}

// armWrite sets the write deadline for the next write: a client that
// stops reading is cut after the write timeout and the request's slot
// freed, instead of holding it as long as it keeps the connection open.
func (hw *httpWriter) armWrite() {
	_ = hw.rc.SetWriteDeadline(until(hw.h.Limits.WriteTimeout, hw.req.Deadline))
}

func (hw *httpWriter) Write(p []byte) error {
	hw.armWrite()
	if _, err := hw.w.Write(p); err != nil {
		return err
	}
	return hw.rc.Flush()
}

func (hw *httpWriter) SendFile(path string, offset, n int64) error {
	f, body, err := openRegion(path, offset, n)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := copyWithDeadlines(hw.w, body, hw.armWrite); err != nil {
		return err
	}
	return hw.rc.Flush()
}
