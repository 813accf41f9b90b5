package logx

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// Log lines carry text from clients (request URIs) and apps (stderr), and
// people read logs in terminals: a raw ESC, CR or C1 byte there would
// recolour, overwrite or forge lines. zerolog's JSON escapes C0 controls and
// DEL and replaces invalid UTF-8; the writers here cover the rest.

// newConsoleWriter is zerolog's ConsoleWriter made safe: it quotes field
// values (error included) but prints the message, caller, level, time and
// field names as they come, so those are escaped first. Colours only on a
// terminal: in a file or the journal they are control sequences too.
func newConsoleWriter(w io.Writer) zerolog.ConsoleWriter {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w), FormatPrepare: escapeEvent}
}

func escapeEvent(evt map[string]any) error {
	renamed := map[string]any{}
	// A runner's own record (runner_log) prints as "runner log: MESSAGE"
	// and runner_log.KEY=VALUE fields: string values are then quoted and
	// escaped like any other field's, where zerolog would print a nested
	// object as raw JSON. The runner's own time, and a worker name or level
	// equal to bridge's, are left out (the JSON format keeps the line whole).
	if sub, ok := evt[RunnerField].(map[string]any); ok {
		delete(evt, RunnerField)
		if m, ok := sub["message"].(string); ok && evt[zerolog.MessageFieldName] == RunnerMessage {
			evt[zerolog.MessageFieldName] = RunnerMessage + ": " + m
			delete(sub, "message")
		}
		delete(sub, "ts")
		delete(sub, "time")
		for _, k := range []string{"worker", "level"} { // shown already
			if sub[k] == evt[k] {
				delete(sub, k)
			}
		}
		for k, v := range sub {
			switch v.(type) {
			case string, json.Number, bool, nil:
			default:
				b, _ := json.Marshal(v)
				v = escape(string(b))
			}
			evt[RunnerField+"."+k] = v
		}
	}
	for k, v := range evt {
		switch k {
		case zerolog.MessageFieldName, zerolog.CallerFieldName, zerolog.LevelFieldName, zerolog.TimestampFieldName:
			if s, ok := v.(string); ok {
				evt[k] = escape(s)
			}
		}
		if ek := escape(k); ek != k {
			delete(evt, k)
			renamed[ek] = v
		}
	}
	for k, v := range renamed {
		evt[k] = v
	}
	return nil
}

// escape writes non-printable characters (controls, format characters such
// as a right-to-left override, invalid UTF-8) as Go escapes: "\x1b", "\r",
// "\u202e", "\xff". Printable text, non-ASCII included, stays as it is.
func escape(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// c1Writer escapes the C1 controls (U+0080–U+009F) that zerolog's JSON
// leaves raw: some terminals obey them (U+009B is CSI). In zerolog's output
// their UTF-8 form (0xC2 0x80–0x9F) only occurs inside strings, so a byte
// rewrite to \u0080 keeps the JSON valid.
type c1Writer struct{ w io.Writer }

func (c c1Writer) Write(p []byte) (int, error) {
	i := indexC1(p)
	if i < 0 {
		return c.w.Write(p)
	}
	out := make([]byte, 0, len(p)+16)
	rest := p
	for ; i >= 0; i = indexC1(rest) {
		out = append(out, rest[:i]...)
		out = append(out, `\u00`...)
		out = strconv.AppendUint(out, uint64(rest[i+1]), 16)
		rest = rest[i+2:]
	}
	out = append(out, rest...)
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func indexC1(p []byte) int {
	for off := 0; ; {
		i := bytes.IndexByte(p[off:], 0xc2)
		if i < 0 {
			return -1
		}
		off += i
		if off+1 < len(p) && p[off+1] >= 0x80 && p[off+1] <= 0x9f {
			return off
		}
		off++
	}
}
