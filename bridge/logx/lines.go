package logx

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/rs/zerolog"
)

// maxLine caps one re-logged line; longer ones are cut and marked.
const maxLine = 16 << 10

// RunnerField is the key under which a runner's own log line is kept, and
// RunnerMessage the message of every record that carries one.
const (
	RunnerField   = "runner_log"
	RunnerMessage = "runner log"
)

// LineLogger is an io.Writer for a runner's stderr. Each line becomes one
// log record of bridge's: level, time, message ("runner log"), worker, pid,
// runner and every other top-level field are bridge's own, and what the
// runner wrote is under "runner_log", never merged with them. A line that
// is a JSON object is kept there as it is; any other line becomes
// {"message": LINE}. So nothing the app writes is lost, and nothing it
// writes can pass for one of bridge's records: an app that prints
// {"message":"request","status":200,"req_id":"x"} gets a "runner log"
// record with those inside runner_log (docs/security.md).
//
// The one thing taken from the line is its level ("level": debug, info,
// warn, error...; info if missing or unknown): an app may make its own
// lines louder or quieter, which changes nothing about bridge's.
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
	if line[0] == '{' {
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber() // 64-bit ids stay exact
		var rec map[string]any
		if d.Decode(&rec) == nil && !d.More() {
			if raw, err := marshal(rec); err == nil {
				l.emitRecord(rec, raw)
				return
			}
		}
	}
	raw, _ := marshal(map[string]any{"message": string(line)})
	ev := l.log.Info().Str("stream", l.stream).RawJSON(RunnerField, raw)
	if truncated {
		ev = ev.Bool("truncated", true)
	}
	ev.Msg(RunnerMessage)
}

// emitRecord logs a runner's JSON line rec (raw: rec encoded again, so
// that bridge's log holds only JSON it wrote itself).
func (l *LineLogger) emitRecord(rec map[string]any, raw []byte) {
	lvl := zerolog.InfoLevel
	if s, ok := rec["level"].(string); ok {
		if parsed, err := zerolog.ParseLevel(s); err == nil && parsed >= zerolog.TraceLevel && parsed <= zerolog.PanicLevel {
			lvl = parsed
		}
	}
	// WithLevel never exits or panics, whatever the level.
	if msg, _ := rec["message"].(string); lvl >= zerolog.ErrorLevel && msg != "" {
		l.lastErr = msg
	}
	l.log.WithLevel(lvl).RawJSON(RunnerField, raw).Msg(RunnerMessage)
}

// marshal encodes v as JSON without HTML escapes (<, >, & stay as they are
// in tracebacks); invalid UTF-8 becomes U+FFFD, and DEL is escaped as
// zerolog escapes it (the C1 controls are c1Writer's).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	// Outside strings JSON has no DEL byte: this rewrite stays valid JSON.
	return bytes.ReplaceAll(bytes.TrimRight(b.Bytes(), "\n"), []byte{0x7f}, []byte(`\u007f`)), nil
}
