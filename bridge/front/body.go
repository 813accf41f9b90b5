package front

import (
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
// in flight), never a worker. A body of up to memBodyMax bytes is kept in
// memory as the pieces it arrived in: the first is req.Prefetched, the
// rest req.Body. A bigger one goes to an unlinked temp file, returned to
// be closed after the request, and req.Body reads it. Either way req.Body
// can be read again from its start (rewind), for a retry.
// req.ContentLength < 0 means the length is unknown (chunked); it is known
// afterwards.
func (h *Handler) readBody(req *request.Request) (io.Closer, error) {
	body, n, limit := req.Body, req.ContentLength, h.Limits.MaxBody
	req.Body = nil
	if body == nil {
		req.ContentLength = max(n, 0)
		return nil, nil
	}
	if n > limit {
		return nil, tooLarge(n, limit)
	}
	var mem pieces
	if n <= memBodyMax {
		// A byte past what memory holds (or past the limit) is how a
		// chunked body too big for memory (or at all) shows.
		want := n
		if n < 0 {
			want = min(int64(memBodyMax), limit) + 1
		}
		got, err := mem.fill(body, want)
		switch {
		case errors.Is(err, errBodyMemory):
			// Memory for bodies is all in use: this one goes to a file.
		case err != nil:
			mem.Close()
			return nil, bodyError(err)
		case n >= 0 && got < n:
			mem.Close()
			return nil, bodyError(io.ErrUnexpectedEOF)
		case n < 0 && got > limit:
			mem.Close()
			return nil, tooLarge(got, limit)
		case got <= memBodyMax:
			setLength(req, n, got)
			if len(mem) == 0 {
				return nil, nil
			}
			req.Prefetched = *mem[0]
			if len(mem) > 1 {
				req.Body = &piecesReader{p: mem[1:]}
			}
			return mem, nil
		}
	}
	defer mem.Close() // copied to the file
	return spool(req, body, mem, n, limit)
}

// spool writes a body too big for memory to an unlinked temp file: first
// what was read into memory (a chunked body's start), then the rest.
func spool(req *request.Request, body io.Reader, mem pieces, n, limit int64) (io.Closer, error) {
	f, err := os.CreateTemp("", "bridge-body-")
	if err != nil {
		return nil, request.Errorf(http.StatusInternalServerError, "spooling request body", err)
	}
	os.Remove(f.Name()) // nobody else needs its name; the space goes with the fd
	held := mem.size()
	rest := limit + 1 - held
	if n >= 0 {
		rest = n - held
	}
	copied, err := io.Copy(f, io.MultiReader(&piecesReader{p: mem}, io.LimitReader(body, rest)))
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
	// A section reader reads with pread, from its own offset: a retry
	// makes another (rewind).
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
	switch b := req.Body.(type) {
	case *piecesReader:
		req.Body = &piecesReader{p: b.p}
	case *io.SectionReader:
		req.Body = io.NewSectionReader(b, 0, b.Size())
	}
}
