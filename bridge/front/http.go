package front

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/request"
	bridgev1 "bridge/proto/bridge/v1"
)

// prefetchMax is the body size read before dispatch so that the request goes
// to the runner as one message.
const prefetchMax = 64 << 10

// HTTP is the HTTP/1.1 front: a net/http handler that builds the canonical
// request from *http.Request (docs/conformance.md H1–H25).
type HTTP struct {
	H *Handler
	// ServerName is SERVER_NAME for requests without a Host (HTTP/1.0).
	ServerName string
}

// ServeHTTP implements http.Handler.
func (f *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := f.canonical(r)
	if err == nil {
		err = f.H.Serve(r.Context(), req, &httpWriter{w: w, rc: http.NewResponseController(w), log: f.H.Log.With().Str("req_id", req.ID).Logger()})
	}
	if req != nil && req.Body != nil {
		if c, ok := req.Body.(io.Closer); ok && req.Body != r.Body {
			c.Close()
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, request.ErrAbort), errors.Is(err, dispatch.ErrClientGone):
		// Head sent, body incomplete: cut the connection so the client
		// cannot mistake this for a complete response (G3).
		panic(http.ErrAbortHandler)
	default:
		var re *request.Error
		if errors.As(err, &re) {
			writeHTTPError(w, re.Status)
		}
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
		host = f.ServerName
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
	if err := f.body(r, req, l); err != nil {
		return req, err
	}
	req.Vars = l.vars
	return req, nil
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

// body sets the request body. A known length over the limit is 413 before
// anything is read, so no 100 Continue goes out (H6). A chunked body is
// buffered whole (H7 buffer mode) so the app sees a CONTENT_LENGTH.
func (f *HTTP) body(r *http.Request, req *request.Request, l *varList) error {
	switch n := r.ContentLength; {
	case n == 0 || r.Body == nil || r.Body == http.NoBody:
		req.ContentLength = 0
	case n > f.H.MaxBody:
		return request.Errorf(http.StatusRequestEntityTooLarge, "request body too large", fmt.Errorf("content-length %d > %d", n, f.H.MaxBody))
	case n > 0 && n <= prefetchMax:
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return request.Errorf(http.StatusBadRequest, "short request body", err)
		}
		req.ContentLength, req.Prefetched = n, buf
	case n > 0:
		req.ContentLength, req.Body = n, r.Body
	default: // chunked
		sp, err := spool(r.Body, f.H.MaxBody)
		if err != nil {
			return err
		}
		req.ContentLength = sp.size
		if sp.mem != nil {
			req.Prefetched = sp.mem
		} else {
			req.Body = sp.file
		}
	}
	if req.ContentLength > 0 {
		l.set("CONTENT_LENGTH", strconv.AppendInt(nil, req.ContentLength, 10))
	}
	return nil
}

// spooled is a fully read chunked body: in memory when small, else in an
// unlinked temp file.
type spooled struct {
	size int64
	mem  []byte
	file *os.File
}

func spool(body io.Reader, max int64) (*spooled, error) {
	var buf bytes.Buffer
	n, err := io.CopyN(&buf, body, prefetchMax+1)
	if err == io.EOF || (err == nil && n <= prefetchMax) {
		return &spooled{size: n, mem: buf.Bytes()}, nil
	}
	if err != nil {
		return nil, request.Errorf(http.StatusBadRequest, "reading chunked body", err)
	}
	f, err := os.CreateTemp("", "bridge-body-")
	if err != nil {
		return nil, request.Errorf(http.StatusInternalServerError, "spooling body", err)
	}
	os.Remove(f.Name())
	total, err := io.Copy(f, io.MultiReader(&buf, io.LimitReader(body, max+1-n)))
	if err != nil {
		f.Close()
		return nil, request.Errorf(http.StatusBadRequest, "reading chunked body", err)
	}
	if total > max {
		f.Close()
		return nil, request.Errorf(http.StatusRequestEntityTooLarge, "request body too large", fmt.Errorf("chunked body over %d bytes", max))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, request.Errorf(http.StatusInternalServerError, "spooling body", err)
	}
	return &spooled{size: total, file: f}, nil
}

// httpWriter adapts http.ResponseWriter to request.ResponseWriter.
type httpWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController // made once: every chunk is flushed (W23)
	log zerolog.Logger
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

func (hw *httpWriter) Write(p []byte) error {
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
	if _, err := io.Copy(hw.w, body); err != nil {
		return err
	}
	return hw.rc.Flush()
}

// NewHTTPServer wraps the front in an http.Server with bridge's timeouts.
func NewHTTPServer(f *HTTP, base func(net.Listener) context.Context) *http.Server {
	return &http.Server{
		Handler:           f,
		ReadHeaderTimeout: defaultReadTimeout,
		IdleTimeout:       defaultIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       base,
	}
}
