package conform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	bridgev1 "bridge/proto/bridge/v1"
)

// req is one request the kit sends on a Slot stream.
type req struct {
	method string
	path   string // with query string
	body   []byte
	// piece is the size of the body frames (0: the whole body in the head
	// frame, as bridge sends a small POST).
	piece int
	// open leaves the body unfinished: the kit sends the head and the body
	// but no end, for the cancel checks.
	open bool
	// length overrides the declared content length (open requests).
	length int64
}

// frame is one ResponseFrame and when it arrived, relative to the send.
type frame struct {
	at time.Duration
	f  *bridgev1.ResponseFrame
}

// reply is everything a runner answered to one request.
type reply struct {
	id     string
	frames []frame
	err    error // a stream error before the response end
}

// head returns the response head, or nil.
func (r *reply) head() *bridgev1.ResponseHead {
	for _, f := range r.frames {
		if f.f.Head != nil {
			return f.f.Head
		}
	}
	return nil
}

// body joins the body chunks.
func (r *reply) body() []byte {
	var b []byte
	for _, f := range r.frames {
		b = append(b, f.f.Body...)
	}
	return b
}

// last is the final frame (the one with end), or nil.
func (r *reply) last() *bridgev1.ResponseFrame {
	if n := len(r.frames); n > 0 {
		return r.frames[n-1].f
	}
	return nil
}

// String lists the frames as a failure message shows them.
func (r *reply) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "request %s, %d frame(s):", r.id, len(r.frames))
	for i, f := range r.frames {
		if i == 12 && len(r.frames) > 14 {
			fmt.Fprintf(&b, "\n    … %d more", len(r.frames)-13)
			i = len(r.frames) - 1
			f = r.frames[i]
		} else if i > 12 && i < len(r.frames)-1 {
			continue
		}
		fmt.Fprintf(&b, "\n    %7.1f ms  %s", float64(f.at.Microseconds())/1000, describeFrame(f.f))
	}
	if r.err != nil {
		fmt.Fprintf(&b, "\n    stream error: %v", r.err)
	}
	return b.String()
}

func describeFrame(f *bridgev1.ResponseFrame) string {
	var parts []string
	if h := f.Head; h != nil {
		parts = append(parts, fmt.Sprintf("head{%d %q, %d header(s)}", h.Status, h.Reason, len(h.Headers)))
	}
	if len(f.Body) > 0 || f.Body != nil {
		parts = append(parts, fmt.Sprintf("body{%d B %s}", len(f.Body), preview(f.Body)))
	}
	if fl := f.File; fl != nil {
		parts = append(parts, fmt.Sprintf("file{%s @%d +%d}", fl.Path, fl.Offset, fl.Length))
	}
	if e := f.Error; e != nil {
		parts = append(parts, fmt.Sprintf("error{%s: %s}", e.Kind, preview([]byte(e.Message))))
	}
	for _, flag := range []struct {
		on   bool
		name string
	}{{f.End, "end"}, {f.Abort, "abort"}, {f.Retire, "retire"}} {
		if flag.on {
			parts = append(parts, flag.name)
		}
	}
	if len(parts) == 0 {
		return "(empty frame)"
	}
	return strings.Join(parts, " ")
}

func preview(b []byte) string {
	if len(b) > 24 {
		return strconv.Quote(string(b[:24])) + "…"
	}
	return strconv.Quote(string(b))
}

// headFrame builds the first RequestFrame of r, as bridge's fronts would.
func headFrame(id string, r req) *bridgev1.RequestFrame {
	path, query, _ := strings.Cut(r.path, "?")
	vars := [][2]string{
		{"REQUEST_METHOD", r.method},
		{"REQUEST_URI", r.path},
		{"SCRIPT_NAME", ""},
		{"PATH_INFO", path},
		{"QUERY_STRING", query},
		{"SERVER_NAME", "127.0.0.1"},
		{"SERVER_PORT", "80"},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"REMOTE_ADDR", "127.0.0.1"},
		{"REMOTE_PORT", "40000"},
		{"HTTP_HOST", "127.0.0.1"},
	}
	length := int64(len(r.body))
	if r.length > 0 {
		length = r.length
	}
	if r.method == "POST" || length > 0 {
		vars = append(vars, [2]string{"CONTENT_LENGTH", strconv.FormatInt(length, 10)},
			[2]string{"CONTENT_TYPE", "application/octet-stream"})
	}
	head := &bridgev1.RequestHead{RequestId: id, UrlScheme: "http", ContentLength: length}
	for _, v := range vars {
		head.Vars = append(head.Vars, &bridgev1.Var{Name: []byte(v[0]), Value: []byte(v[1])})
	}
	f := &bridgev1.RequestFrame{Head: head}
	if r.piece == 0 {
		f.Body = r.body
		f.End = !r.open
	}
	return f
}

// send writes r's frames on s: the head, then the body in pieces.
func send(s bridgev1.Runner_SlotClient, id string, r req) error {
	if err := s.Send(headFrame(id, r)); err != nil {
		return err
	}
	if r.piece == 0 {
		return nil
	}
	for off := 0; off < len(r.body); off += r.piece {
		end := min(off+r.piece, len(r.body))
		if err := s.Send(&bridgev1.RequestFrame{Body: r.body[off:end]}); err != nil {
			return err
		}
	}
	if r.open {
		return nil
	}
	return s.Send(&bridgev1.RequestFrame{End: true})
}

// exchange sends r on s from its own goroutine, so that a runner that
// answers while the body is still on its way is not stalled by the kit's
// own sending, and reads the answer (see receive for each). The channel
// gives the send's outcome.
func exchange(ctx context.Context, s bridgev1.Runner_SlotClient, id string, r req, each func(*bridgev1.ResponseFrame) bool) (*reply, <-chan error) {
	rep := &reply{id: id}
	sent := make(chan error, 1)
	start := time.Now()
	go func() { sent <- send(s, id, r) }()
	receive(ctx, s, rep, start, each)
	return rep, sent
}

// receive reads frames until one has end, the stream fails, or ctx ends.
// each, if set, sees every frame as it arrives and may stop the read by
// returning false.
func receive(ctx context.Context, s bridgev1.Runner_SlotClient, rep *reply, start time.Time, each func(*bridgev1.ResponseFrame) bool) {
	for {
		f, err := s.Recv()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("no response end in time: %w", ctx.Err())
			} else if errors.Is(err, io.EOF) {
				err = errors.New("the runner ended the stream before the response end")
			}
			rep.err = err
			return
		}
		rep.frames = append(rep.frames, frame{at: time.Since(start), f: f})
		if each != nil && !each(f) {
			return
		}
		if f.End {
			return
		}
	}
}

// stats is the kit app's /stats answer for one request id.
type stats struct {
	Calls     int `json:"calls"`
	Bodies    int `json:"bodies"`
	Closes    int `json:"closes"`
	MaxActive int `json:"max_active"`
}

func parseStats(b []byte) (stats, error) {
	var st stats
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("/stats answered %s: %w", preview(b), err)
	}
	return st, nil
}
