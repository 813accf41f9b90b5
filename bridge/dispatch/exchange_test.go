package dispatch

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"bridge/bridge/request"
	bridgev1 "bridge/proto/bridge/v1"
)

// frames is a Slot stream that answers with the given response frames.
type frames struct {
	bridgev1.Runner_SlotClient // only Recv is used
	fs                         []*bridgev1.ResponseFrame
}

func (f *frames) Recv() (*bridgev1.ResponseFrame, error) {
	if len(f.fs) == 0 {
		return nil, io.EOF
	}
	fr := f.fs[0]
	f.fs = f.fs[1:]
	return fr, nil
}

// recorder is a front that keeps what it is given.
type recorder struct {
	heads   int
	status  int
	reason  string
	headers []string
	body    bytes.Buffer
}

func (r *recorder) WriteHead(status int, reason string, headers []*bridgev1.Header) error {
	r.heads++
	r.status, r.reason, r.headers = status, reason, names(headers)
	return nil
}

func (r *recorder) Write(p []byte) error {
	r.body.Write(p)
	return nil
}

func (r *recorder) SendFile(path string, offset, n int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var src io.Reader = io.NewSectionReader(f, offset, 1<<62)
	if n >= 0 {
		src = io.LimitReader(src, n)
	}
	_, err = io.Copy(&r.body, src)
	return err
}

func head(status uint32, kv ...string) *bridgev1.ResponseHead {
	return &bridgev1.ResponseHead{Status: status, Headers: hdrs(kv...)}
}

type received struct {
	rec   *recorder
	res   Result
	clean bool
	err   error
	log   string
}

func receiveAll(t *testing.T, isHead bool, fs ...*bridgev1.ResponseFrame) received {
	t.Helper()
	var logs bytes.Buffer
	s := &Slot{worker: &Worker{Name: "w1"}}
	r := received{rec: &recorder{}}
	r.clean, r.err = s.receive(&frames{fs: fs}, r.rec, isHead, &r.res, zerolog.New(&logs))
	r.log = logs.String()
	return r
}

// G26 G11 H16 H17: a runner's head with CR LF in a value or in the reason
// phrase, a bad name or a bad status is refused before anything is written:
// 502, a warning naming the header and the problem, never the value.
func TestReceiveRefusesBadHead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		head  *bridgev1.ResponseHead
		inLog string
	}{
		{"value CR LF", head(200, "Content-Type", "text/plain", "X-Bad", "a\r\nSet-Cookie: x=1"), `"header":"X-Bad","problem":"value has byte 0x0d at 1"`},
		{"reason CR LF", &bridgev1.ResponseHead{Status: 200, Reason: "OK\r\nSet-Cookie: x=1"}, `"problem":"reason phrase has byte 0x0d at 2"`},
		{"name with colon", head(200, "Set-Cookie: x=1", "y"), `"header":"Set-Cookie","problem":"name is not a token: byte 0x3a at 10"`},
		{"status 1xx", head(100), `"problem":"status 100 is not a final status (200-999)"`},
		{"two lengths", head(200, "Content-Length", "2", "Content-Length", "3"), `"header":"Content-Length","problem":"several different values"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := receiveAll(t, false, &bridgev1.ResponseFrame{Head: tc.head, Body: []byte("ok"), End: true})
			var re *request.Error
			var he *HeadError
			if !errors.As(r.err, &re) || re.Status != http.StatusBadGateway || !errors.As(r.err, &he) {
				t.Fatalf("err %v, want a 502 with a HeadError", r.err)
			}
			if r.rec.heads != 0 || r.rec.body.Len() != 0 || r.res.HeadSent {
				t.Errorf("written: %d heads, body %q, HeadSent %v", r.rec.heads, r.rec.body.String(), r.res.HeadSent)
			}
			if r.clean {
				t.Errorf("stream kept: the rest of the bad response would be read as the next one's")
			}
			if !strings.Contains(r.log, `"level":"warn"`) || !strings.Contains(r.log, tc.inLog) {
				t.Errorf("log %s\nwant %s", r.log, tc.inLog)
			}
			if strings.Contains(r.log, "x=1") || strings.Contains(r.err.Error(), "x=1") {
				t.Errorf("a value reached the log or the error: %s / %v", r.log, r.err)
			}
		})
	}
}

// G26 G12 H13: hop-by-hop headers are dropped in dispatch, for every front, with
// a warning each; the rest keeps its order.
func TestReceiveDropsHopByHop(t *testing.T) {
	r := receiveAll(t, false, &bridgev1.ResponseFrame{
		Head: head(200, "Connection", "close", "X-Ok", "1", "Transfer-Encoding", "chunked", "Content-Length", "2"),
		Body: []byte("ok"), End: true,
	})
	if r.err != nil || !r.clean {
		t.Fatalf("err %v clean %v", r.err, r.clean)
	}
	if got := strings.Join(r.rec.headers, "|"); got != "X-Ok: 1|Content-Length: 2" || r.rec.body.String() != "ok" {
		t.Errorf("headers %q body %q", got, r.rec.body.String())
	}
	if n := strings.Count(r.log, "dropped hop-by-hop response header from the app"); n != 2 || !strings.Contains(r.log, `"header":"Connection"`) {
		t.Errorf("log %s", r.log)
	}
}

// G26 G13 U21: a body longer than its Content-Length is cut at the declared
// length, with one warning; a body shorter than declared is an abort, also
// with a warning. HEAD, 204 and 304 may declare more than they send.
func TestReceiveHoldsBodyToContentLength(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ten")
	if err := os.WriteFile(file, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := func(s string) *bridgev1.ResponseFrame { return &bridgev1.ResponseFrame{Body: []byte(s)} }
	end := &bridgev1.ResponseFrame{End: true}
	withHead := func(f *bridgev1.ResponseFrame, h *bridgev1.ResponseHead) *bridgev1.ResponseFrame {
		f.Head = h
		return f
	}
	sendFile := func(offset, n int64) *bridgev1.ResponseFrame {
		return &bridgev1.ResponseFrame{File: &bridgev1.File{Path: file, Offset: offset, Length: n}}
	}
	const cut, short = "more body than its Content-Length", "shorter than its Content-Length"
	for _, tc := range []struct {
		name   string
		isHead bool
		fs     []*bridgev1.ResponseFrame
		body   string
		clean  bool
		abort  bool
		warn   string
	}{
		{name: "exact", fs: []*bridgev1.ResponseFrame{withHead(body("hel"), head(200, "Content-Length", "5")), body("lo"), end}, body: "hello", clean: true},
		{name: "no length", fs: []*bridgev1.ResponseFrame{withHead(body("hel"), head(200)), body("lo"), end}, body: "hello", clean: true},
		{name: "long, one frame", fs: []*bridgev1.ResponseFrame{{Head: head(200, "Content-Length", "5"), Body: []byte("hello world"), End: true}}, body: "hello", clean: true, warn: cut},
		// The app is still sending: the stream is dropped (the runner
		// closes the body) and the client has its whole response.
		{name: "long, streamed", fs: []*bridgev1.ResponseFrame{withHead(body("hel"), head(200, "Content-Length", "5")), body("lo wo"), body("rld"), end}, body: "hello", clean: false, warn: cut},
		{name: "long, past it in a later frame", fs: []*bridgev1.ResponseFrame{withHead(body("hello"), head(200, "Content-Length", "5")), body("!"), end}, body: "hello", clean: false, warn: cut},
		{name: "short", fs: []*bridgev1.ResponseFrame{{Head: head(200, "Content-Length", "10"), Body: []byte("short"), End: true}}, body: "short", clean: true, abort: true, warn: short},
		{name: "short, nothing", fs: []*bridgev1.ResponseFrame{{Head: head(200, "Content-Length", "10"), End: true}}, clean: true, abort: true, warn: short},
		{name: "HEAD declares more", isHead: true, fs: []*bridgev1.ResponseFrame{{Head: head(200, "Content-Length", "10"), End: true}}, clean: true},
		{name: "304 declares more", fs: []*bridgev1.ResponseFrame{{Head: head(304, "Content-Length", "10"), End: true}}, clean: true},
		{name: "204 declares more", fs: []*bridgev1.ResponseFrame{{Head: head(204, "Content-Length", "10"), End: true}}, clean: true},
		{name: "file to EOF, exact", fs: []*bridgev1.ResponseFrame{withHead(sendFile(0, -1), head(200, "Content-Length", "10")), end}, body: "0123456789", clean: true},
		{name: "file to EOF, long", fs: []*bridgev1.ResponseFrame{withHead(sendFile(2, -1), head(200, "Content-Length", "4")), end}, body: "2345", clean: false, warn: cut},
		{name: "file to EOF, short", fs: []*bridgev1.ResponseFrame{withHead(sendFile(0, -1), head(200, "Content-Length", "12")), end}, body: "0123456789", clean: true, abort: true, warn: short},
		{name: "body then file region, long", fs: []*bridgev1.ResponseFrame{withHead(body("ab"), head(200, "Content-Length", "5")), sendFile(0, 6), end}, body: "ab012", clean: false, warn: cut},
		{name: "file region, exact", fs: []*bridgev1.ResponseFrame{withHead(sendFile(3, 3), head(200, "Content-Length", "3")), end}, body: "345", clean: true},
		{name: "file past the end of the length", fs: []*bridgev1.ResponseFrame{withHead(body("hello"), head(200, "Content-Length", "5")), sendFile(0, -1), end}, body: "hello", clean: false, warn: cut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := receiveAll(t, tc.isHead, tc.fs...)
			if tc.abort != errors.Is(r.err, request.ErrAbort) || (!tc.abort && r.err != nil) {
				t.Errorf("err %v, abort wanted: %v", r.err, tc.abort)
			}
			if r.clean != tc.clean {
				t.Errorf("clean %v", r.clean)
			}
			if got := r.rec.body.String(); got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
			switch {
			case tc.warn == "" && strings.Contains(r.log, "Content-Length"):
				t.Errorf("unexpected log %s", r.log)
			case tc.warn != "" && (strings.Count(r.log, tc.warn) != 1 || !strings.Contains(r.log, `"level":"warn"`)):
				t.Errorf("log %s, want one warning %q", r.log, tc.warn)
			}
		})
	}
}

// The hello path through receive: a valid one-frame response allocates
// nothing in dispatch.
func TestReceiveHelloDoesNotAllocate(t *testing.T) {
	s := &Slot{worker: &Worker{Name: "w1"}}
	hello := &bridgev1.ResponseFrame{Head: &bridgev1.ResponseHead{Status: 200, Headers: helloHead}, Body: []byte("hello world\n"), End: true}
	one := []*bridgev1.ResponseFrame{hello}
	st := &frames{}
	rw := nopWriter{}
	log := zerolog.Nop()
	var res Result
	n := testing.AllocsPerRun(1000, func() {
		st.fs = one
		res = Result{}
		if clean, err := s.receive(st, rw, false, &res, log); !clean || err != nil {
			t.Fatal(clean, err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per hello response, want 0", n)
	}
}

func BenchmarkReceiveHello(b *testing.B) {
	s := &Slot{worker: &Worker{Name: "w1"}}
	hello := &bridgev1.ResponseFrame{Head: &bridgev1.ResponseHead{Status: 200, Headers: helloHead}, Body: []byte("hello world\n"), End: true}
	one := []*bridgev1.ResponseFrame{hello}
	st := &frames{}
	log := zerolog.Nop()
	var res Result
	b.ReportAllocs()
	for b.Loop() {
		st.fs = one
		res = Result{}
		_, _ = s.receive(st, nopWriter{}, false, &res, log)
	}
}

type nopWriter struct{}

func (nopWriter) WriteHead(int, string, []*bridgev1.Header) error { return nil }
func (nopWriter) Write([]byte) error                              { return nil }
func (nopWriter) SendFile(string, int64, int64) error             { return nil }
