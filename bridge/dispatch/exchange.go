package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"bridge/bridge/request"
	bridgev1 "bridge/proto/bridge/v1"
)

// Result describes how an exchange went, for the access log and metrics.
type Result struct {
	Status   int
	Bytes    int64
	HeadSent bool
}

// maxChunk bounds one request body frame. docs/design.md ("The wire
// contract"): bigger messages are cheaper per byte, and gRPC's default
// limit is 4 MiB.
const maxChunk = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, maxChunk); return &b }}

// ErrNotDelivered marks a failure that happened before the runner could see
// the request: it is safe to try another slot.
var ErrNotDelivered = errors.New("request not delivered")

// ErrRunnerLost marks a request whose runner connection broke before any
// response frame came back: the app may or may not have seen it, so only
// a request that is safe to repeat may be tried again (handler's rule).
var ErrRunnerLost = errors.New("runner connection lost before it answered")

// Exchange runs req on the slot and writes the response to rw. Its error
// says what went wrong (a *request.Error with a status, request.ErrAbort,
// request.ErrClientGone, or the stream's error once ctx has ended); what the
// client gets is decided by request.Classify with ctx's error.
func (s *Slot) Exchange(ctx context.Context, req *request.Request, rw request.ResponseWriter, log zerolog.Logger) (Result, error) {
	var res Result
	if err := s.open(); err != nil {
		s.worker.broken()
		return res, request.Errorf(http.StatusBadGateway, "runner unavailable", fmt.Errorf("%w: %w", ErrNotDelivered, err))
	}
	stream, cancel := s.stream, s.cancel
	// Client gone or deadline passed: cancel the stream; the runner closes
	// the app's body and Recv below returns.
	stop := context.AfterFunc(ctx, cancel)
	clean, err := s.exchange(stream, req, rw, &res, log)
	if !stop() || !clean {
		s.reset()
		if s.worker.CancelGrace > 0 {
			s.abandon(ctx, req.ID)
		}
		var bad *HeadError
		if ctx.Err() == nil && request.StatusOf(err) == http.StatusBadGateway && !errors.As(err, &bad) {
			s.worker.broken() // the runner may be gone: have it checked now
		}
	}
	return res, err
}

// exchange does the frame work. clean is false when the stream can no longer
// carry the next request.
func (s *Slot) exchange(stream bridgev1.Runner_SlotClient, req *request.Request, rw request.ResponseWriter, res *Result, log zerolog.Logger) (clean bool, err error) {
	if c := s.codec; c != nil {
		// The last frame's body is written by now: its buffer goes back to
		// gRPC's pool instead of waiting for the slot's next request.
		defer c.release()
	}
	first := &bridgev1.RequestFrame{
		Head: &bridgev1.RequestHead{
			RequestId:     req.ID,
			Vars:          req.Vars,
			UrlScheme:     req.Scheme,
			ContentLength: req.ContentLength,
		},
		Body: req.Prefetched,
		End:  req.Body == nil,
	}
	if err := stream.Send(first); err != nil {
		// The stream was already dead (its runner exited): the app never
		// saw this request, so it may go to another worker.
		return false, s.unavailable(stream, fmt.Errorf("%w: %w", ErrNotDelivered, err))
	}
	var snd *sender
	if req.Body != nil {
		snd = startSender(stream, req.Body)
	}
	clean, err = s.receive(stream, rw, req.Method == "HEAD", res, log)
	if snd != nil {
		if !clean {
			// The stream is dropped anyway (Exchange resets it): cancel it
			// now, so that a sender blocked on flow control returns.
			s.cancel()
		}
		if !snd.finish() {
			clean = false
		}
	}
	return clean, err
}

// receive reads response frames until the response ends. A response's
// first body chunk is written at once (with the head, one write); later
// small chunks go through a coalescer, which writes whatever has piled up
// while it was writing in one go. The head is checked first (checkHead);
// the body is held to the Content-Length it declares (bodyLength). head
// says the request was a HEAD.
func (s *Slot) receive(stream bridgev1.Runner_SlotClient, rw request.ResponseWriter, head bool, res *Result, log zerolog.Logger) (bool, error) {
	var co *coalescer
	defer func() {
		if co != nil {
			co.stop() // the front owns rw again once receive returns
		}
	}()
	lim := bodyLength{declared: -1}
	for {
		f, err := stream.Recv()
		if err != nil {
			if res.HeadSent {
				return false, request.ErrAbort
			}
			return false, s.unavailable(stream, err)
		}
		if h := f.Head; h != nil && !res.HeadSent {
			headers, declared, err := checkHead(h.Status, h.Reason, h.Headers, func(name []byte, why string) {
				log.Warn().Str("worker", s.worker.Name).Bytes("header", name).Msg("dropped " + why + " response header from the app")
			})
			if err != nil {
				// The runner let through what its shim should have refused
				// (an exec: runner need not check): the client gets 502 and
				// the stream is dropped with the rest of the response.
				he := err.(*HeadError)
				ev := log.Warn().Str("worker", s.worker.Name)
				if he.Header != "" {
					ev = ev.Str("header", he.Header)
				}
				ev.Str("problem", he.Problem).Msg("runner sent an invalid response head; answering 502")
				return false, request.Errorf(http.StatusBadGateway, "runner sent an invalid response head", err)
			}
			lim.declared = declared
			res.Status, res.HeadSent = int(h.Status), true
			if err := rw.WriteHead(int(h.Status), h.Reason, headers); err != nil {
				return false, request.ErrClientGone
			}
		}
		if (len(f.Body) > 0 || f.File != nil) && !res.HeadSent {
			return false, request.Errorf(http.StatusBadGateway, "runner sent body before head", nil)
		}
		if body := f.Body; len(body) > 0 {
			if n := lim.take(int64(len(body))); n < int64(len(body)) {
				lim.overrun(log, s.worker.Name)
				body = body[:n]
			}
			var err error
			switch {
			case len(body) == 0:
			case co == nil && (res.Bytes == 0 || f.End || len(body) > coalesceMax):
				err = rw.Write(body)
			case len(body) > coalesceMax:
				if err = co.drain(); err == nil {
					err = rw.Write(body)
				}
			default:
				if co == nil {
					co = newCoalescer(rw)
				}
				err = co.add(body)
			}
			if err != nil {
				return false, request.ErrClientGone
			}
			res.Bytes += int64(len(body))
		}
		if co != nil && (f.File != nil || f.End || lim.cut) {
			if err := co.drain(); err != nil {
				return false, request.ErrClientGone
			}
		}
		if fl := f.File; fl != nil {
			n := lim.file(fl)
			if n != fl.Length {
				lim.overrun(log, s.worker.Name)
			}
			if n != 0 {
				if err := rw.SendFile(fl.Path, fl.Offset, n); err != nil {
					log.Error().Err(err).Str("path", fl.Path).Msg("sending file body failed")
					return false, request.ErrAbort
				}
			}
		}
		if lim.cut && !f.End {
			// Everything declared has gone out: the response is complete.
			// The rest of the app's body is not waited for: dropping the
			// stream cancels the request, and the runner closes the body.
			return false, nil
		}
		if !f.End {
			continue
		}
		if f.Retire {
			// The runner exits after this response (psgix.harakiri):
			// nothing more may be sent to it; the supervisor replaces it.
			s.worker.retire()
			log.Info().Str("worker", s.worker.Name).Msg("runner retires after this request")
		}
		if e := f.Error; e != nil {
			log.Error().Str("worker", s.worker.Name).Str("kind", e.Kind).Str("traceback", e.Traceback).Msg("app error: " + e.Message)
			if !res.HeadSent {
				return true, request.Errorf(http.StatusInternalServerError, "app error", errors.New(e.Message))
			}
			return true, request.ErrAbort
		}
		if f.Abort {
			return true, request.ErrAbort
		}
		if !res.HeadSent {
			return false, request.Errorf(http.StatusBadGateway, "runner ended without a head", nil)
		}
		if lim.short(head, res.Status) {
			// A clean end would pass a cut body off as complete: abort, so
			// that nginx or the HTTP client sees the truncation (G13, G3).
			log.Warn().Str("worker", s.worker.Name).Int64("content_length", lim.declared).Int64("sent", lim.sent).
				Msg("runner's body is shorter than its Content-Length; aborting the response")
			return true, request.ErrAbort
		}
		return true, nil
	}
}

// bodyLength holds a response body to the Content-Length its app declared
// (G13). More is cut at the declared length; less is an abort.
type bodyLength struct {
	declared int64 // -1: no Content-Length
	sent     int64 // body bytes let through so far
	cut      bool  // the body ran past declared
	logged   bool
}

// take lets up to n more bytes through and returns how many.
func (b *bodyLength) take(n int64) int64 {
	if b.declared < 0 {
		return n
	}
	if left := b.declared - b.sent; n > left {
		n, b.cut = left, true
	}
	b.sent += n
	return n
}

// file returns the length to send of a file frame: its own, or less when
// that would run past the declared length. A length to the end of the file
// (-1) is made exact with a stat when a Content-Length was declared; if the
// stat fails, the send fails too.
func (b *bodyLength) file(fl *bridgev1.File) int64 {
	n := fl.Length
	if b.declared < 0 {
		return n
	}
	if n < 0 {
		st, err := os.Stat(fl.Path)
		if err != nil {
			return n
		}
		n = max(st.Size()-fl.Offset, 0)
	}
	if m := b.take(n); m < n {
		return m
	}
	return fl.Length
}

// overrun logs, once, that the body went past its Content-Length.
func (b *bodyLength) overrun(log zerolog.Logger, worker string) {
	if b.logged {
		return
	}
	b.logged = true
	log.Warn().Str("worker", worker).Int64("content_length", b.declared).
		Msg("runner sent more body than its Content-Length; cut at the declared length")
}

// short reports a body that ended before its declared length. HEAD, 204 and
// 304 responses may declare a length they do not send (W30, RFC 9110 8.6).
func (b *bodyLength) short(head bool, status int) bool {
	return b.declared >= 0 && b.sent < b.declared && !head && status != http.StatusNoContent && status != http.StatusNotModified
}

func (s *Slot) unavailable(stream bridgev1.Runner_SlotClient, err error) error {
	if errors.Is(err, io.EOF) && !errors.Is(err, ErrNotDelivered) {
		// Send reports EOF when the stream broke; Recv has the real cause.
		if _, rerr := stream.Recv(); rerr != nil {
			err = rerr
		}
	}
	if !errors.Is(err, ErrNotDelivered) && status.Code(err) == codes.Unavailable {
		// The transport broke (the runner died, its socket closed), as
		// opposed to the runner ending the stream with a status of its own.
		err = fmt.Errorf("%w: %w", ErrRunnerLost, err)
	}
	return request.Errorf(http.StatusBadGateway, "runner unavailable", fmt.Errorf("%s: %w", s.worker.Name, err))
}

// sender streams the request body while the response comes back, so an app
// can answer before it has read everything (and gRPC flow control is the
// back-pressure on a slow app). The body is read whole before dispatch (in
// memory or a file), so the sender never waits for a client.
type sender struct {
	done   atomic.Bool
	result chan bool
}

// PieceReader is a body already in memory, in pieces: each goes out as
// one frame as it is, without a copy into the sender's buffer. NextPiece
// returns nil at the end.
type PieceReader interface {
	NextPiece() []byte
}

func startSender(stream bridgev1.Runner_SlotClient, body io.Reader) *sender {
	sd := &sender{result: make(chan bool, 1)}
	go func() { sd.result <- sd.run(stream, body) }()
	return sd
}

func (sd *sender) run(stream bridgev1.Runner_SlotClient, body io.Reader) bool {
	if pr, ok := body.(PieceReader); ok {
		for b := pr.NextPiece(); b != nil && !sd.done.Load(); b = pr.NextPiece() {
			if stream.Send(&bridgev1.RequestFrame{Body: b}) != nil {
				return false
			}
		}
		return stream.Send(&bridgev1.RequestFrame{End: true}) == nil
	}
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	for !sd.done.Load() {
		n, err := io.ReadAtLeast(body, buf, 1)
		if n > 0 && !sd.done.Load() {
			if serr := stream.Send(&bridgev1.RequestFrame{Body: buf[:n]}); serr != nil {
				return false
			}
		}
		if err != nil {
			// EOF, or the body's file failed: the app sees the end of its
			// input either way; a short body shows as fewer bytes than
			// CONTENT_LENGTH.
			break
		}
	}
	return stream.Send(&bridgev1.RequestFrame{End: true}) == nil
}

// finish is called once the response has ended. It waits for the sender to
// return (the caller may then reuse the body's memory) and reports whether
// the stream is still in step (the body's end frame was sent).
func (sd *sender) finish() bool {
	sd.done.Store(true)
	return <-sd.result
}
