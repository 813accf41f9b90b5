package front

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"bridge/bridge/request"
	bridgev1 "bridge/proto/bridge/v1"
)

const (
	// prefetchMax is the part of a body sent in the request's first frame,
	// so that a small POST reaches the runner as one message.
	prefetchMax = 64 << 10
	// memBodyMax is the largest body held in memory while it is read;
	// bigger ones go to an unlinked temp file. Memory grows with what
	// arrived, never with what a Content-Length promises.
	memBodyMax = 1 << 20
)

// progressReader is a request body with a progress deadline: each read
// must return within every (the body timeout), and never after the
// request's deadline. set is the connection's SetReadDeadline.
type progressReader struct {
	r     io.Reader
	set   func(time.Time) error
	every time.Duration
	req   *request.Request
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.set(until(p.every, p.req.Deadline)); err != nil {
		return 0, err
	}
	return p.r.Read(b)
}

// readBody reads req.Body whole, before the request takes a runner slot:
// a client that uploads slowly then holds only its connection (and counts
// in flight), never a worker. The body ends up in req.Prefetched (and
// req.Body past prefetchMax) or, when big, in a file returned to be closed
// after the request. req.Body is then an *io.SectionReader, over memory or
// the file: a retry reads it again from its start (rewind), and a sender
// left reading by a broken exchange cannot move the retry's offset. req.ContentLength < 0 means the
// length is unknown (chunked); it is known afterwards.
func (h *Handler) readBody(req *request.Request) (*os.File, error) {
	body, n, limit := req.Body, req.ContentLength, h.Limits.MaxBody
	req.Body = nil
	if body == nil {
		req.ContentLength = max(n, 0)
		return nil, nil
	}
	if n > limit {
		return nil, tooLarge(n, limit)
	}
	var mem bytes.Buffer
	// A byte past what memory holds (or past the limit, for a chunked
	// body) is how a body too big for memory (or at all) shows.
	want := min(int64(memBodyMax), limit) + 1
	if n >= 0 {
		want = min(n, int64(memBodyMax)+1)
		mem.Grow(int(min(want, prefetchMax)))
	}
	got, err := io.Copy(&mem, io.LimitReader(body, want))
	if err != nil {
		return nil, bodyError(err)
	}
	switch {
	case n >= 0 && got < want:
		return nil, bodyError(io.ErrUnexpectedEOF)
	case n < 0 && got > limit:
		return nil, tooLarge(got, limit)
	}
	if got <= memBodyMax && (n < 0 || got == n) {
		setLength(req, n, got)
		b := mem.Bytes()
		if got > prefetchMax {
			rest := b[prefetchMax:]
			req.Body = io.NewSectionReader(bytes.NewReader(rest), 0, int64(len(rest)))
			b = b[:prefetchMax]
		}
		req.Prefetched = b
		return nil, nil
	}
	f, err := os.CreateTemp("", "bridge-body-")
	if err != nil {
		return nil, request.Errorf(http.StatusInternalServerError, "spooling request body", err)
	}
	os.Remove(f.Name()) // nobody else needs its name; the space goes with the fd
	rest := limit + 1 - got
	if n >= 0 {
		rest = n - got
	}
	copied, err := io.Copy(f, io.MultiReader(&mem, io.LimitReader(body, rest)))
	switch {
	case err != nil:
		f.Close()
		var pe *os.PathError
		if errors.As(err, &pe) { // the disk, not the client
			return nil, request.Errorf(http.StatusInternalServerError, "spooling request body", err)
		}
		return nil, bodyError(err)
	case n < 0 && copied > limit:
		f.Close()
		return nil, tooLarge(copied, limit)
	case n >= 0 && copied < n:
		f.Close()
		return nil, bodyError(io.ErrUnexpectedEOF)
	}
	setLength(req, n, copied)
	req.Body = io.NewSectionReader(f, 0, copied)
	return f, nil
}

// setLength records the body's length; a chunked one (declared -1) gets
// its CONTENT_LENGTH var now that the length is known (H7: the app sees a
// length, never a chunked body).
func setLength(req *request.Request, declared, n int64) {
	req.ContentLength = n
	if declared < 0 && n > 0 {
		req.Vars = append(req.Vars, &bridgev1.Var{Name: []byte("CONTENT_LENGTH"), Value: strconv.AppendInt(nil, n, 10)})
	}
}

func tooLarge(n, max int64) error {
	return request.Errorf(http.StatusRequestEntityTooLarge, "request body too large", fmt.Errorf("%d bytes > --max-body-size %d", n, max))
}

// bodyError maps a failed body read: a client that stalled past the body
// timeout gets 408, one whose body broke off 400.
func bodyError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return request.Errorf(http.StatusRequestTimeout, "request body timeout", err)
	}
	return request.Errorf(http.StatusBadRequest, "incomplete request body", err)
}

// rewind makes req.Body, as readBody left it, readable again from its start.
func rewind(req *request.Request) {
	if sr, ok := req.Body.(*io.SectionReader); ok {
		req.Body = io.NewSectionReader(sr, 0, sr.Size())
	}
}
