package logx

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/rs/zerolog"
)

// maxLine caps one re-logged line; longer ones are cut and marked.
const maxLine = 16 << 10

// LineLogger is an io.Writer for a runner's stderr. Each line that is a JSON
// object becomes a log record with its fields (level and message mapped to
// zerolog's); any other line is logged as a plain message, so nothing the
// app writes is lost or can break bridge's own log stream.
type LineLogger struct {
	log    zerolog.Logger
	stream string

	mu      sync.Mutex
	partial []byte
	lastErr string
}

// NewLineLogger re-logs lines through log, tagging plain lines with stream.
func NewLineLogger(log zerolog.Logger, stream string) *LineLogger {
	return &LineLogger{log: log, stream: stream}
}

// Write splits p into lines; a trailing partial line waits for its end.
func (l *LineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			if len(l.partial) > maxLine {
				l.emit(l.partial, true)
				l.partial = l.partial[:0]
			}
			break
		}
		line := p[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		l.emit(line, false)
		p = p[i+1:]
	}
	return n, nil
}

// LastError returns the message of the last error-level line, which is how
// a runner explains why it could not start.
func (l *LineLogger) LastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

func (l *LineLogger) emit(line []byte, truncated bool) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	if len(line) > maxLine {
		line, truncated = line[:maxLine], true
	}
	var rec map[string]any
	if line[0] == '{' && json.Unmarshal(line, &rec) == nil {
		l.emitRecord(rec)
		return
	}
	ev := l.log.Info().Str("stream", l.stream)
	if truncated {
		ev = ev.Bool("truncated", true)
	}
	ev.Msg(string(line))
}

func (l *LineLogger) emitRecord(rec map[string]any) {
	lvl := zerolog.InfoLevel
	if s, ok := rec["level"].(string); ok {
		if parsed, err := zerolog.ParseLevel(s); err == nil && parsed != zerolog.NoLevel {
			lvl = parsed
		}
	}
	msg, _ := rec["message"].(string)
	delete(rec, "level")
	delete(rec, "message")
	// bridge's logger already stamps time, pid, worker and runner; the
	// shim's own copies would be duplicate JSON keys.
	for _, k := range []string{"time", "ts", "pid", "worker"} {
		delete(rec, k)
	}
	// One name for the request id across bridge's log (the shims say
	// request_id, as docs/conformance.md G8 does; bridge's own lines say req_id).
	if id, ok := rec["request_id"]; ok {
		delete(rec, "request_id")
		rec["req_id"] = id
	}
	if r, ok := rec["runner"]; ok {
		delete(rec, "runner")
		rec["shim"] = r
	}
	if lvl >= zerolog.ErrorLevel && msg != "" {
		l.lastErr = msg
	}
	l.log.WithLevel(lvl).Fields(rec).Msg(msg)
}
