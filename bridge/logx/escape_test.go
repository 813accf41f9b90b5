package logx

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile is what a client (request URI) or an app (stderr) may send: a
// terminal colour escape, CR LF that would forge a second log line, NUL,
// DEL, a C1 CSI and invalid UTF-8.
const hostile = "/a\x1b[31mred\r\nforged: yes\x00nul\x7fdel\u009b31mcsi\xff\xfe"

// rawControl reports the first control character or invalid UTF-8 in out,
// other than the newline that ends each record.
func rawControl(out []byte) (int, bool) {
	for i := 0; i < len(out); {
		r, size := utf8.DecodeRune(out[i:])
		switch {
		case r == utf8.RuneError && size == 1,
			r < 0x20 && r != '\n',
			r >= 0x7f && r < 0xa0:
			return i, true
		}
		i += size
	}
	return 0, false
}

// Nothing a client or an app sends reaches the log raw, in either format:
// not through a field, an error, the message, or a runner's stderr line
// (plain or JSON, in a value or a key).
func TestHostileTextEscaped(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			log, err := New(&out, format, "debug")
			if err != nil {
				t.Fatal(err)
			}
			log.Info().Str("uri", hostile).Msg("request")
			log.Warn().Err(errors.New(hostile)).Msg("bad request")
			log.Info().Bytes("header", []byte(hostile)).Msg(hostile)
			stderr := NewLineLogger(log, "stderr")
			stderr.Write([]byte(hostile + "\n"))
			rec, _ := json.Marshal(map[string]string{"level": "error", "message": hostile, "caller": hostile, hostile: "key", "exc": hostile})
			stderr.Write(append(rec, '\n'))

			if i, bad := rawControl(out.Bytes()); bad {
				t.Fatalf("raw control character at %d: %q", i, out.Bytes()[max(0, i-20):min(out.Len(), i+20)])
			}
			// CR LF forged no line: one line per record. The plain stderr
			// write is two records, as a runner's LF ends a line.
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 6 {
				t.Fatalf("%d lines, want 6:\n%s", len(lines), out.String())
			}
			if !strings.Contains(out.String(), `\x1b[31m`) && !strings.Contains(out.String(), `\u001b[31m`) {
				t.Errorf("escape sequence not visible as text:\n%s", out.String())
			}
			if strings.Contains(out.String(), `\\x1b`) || strings.Contains(out.String(), `\\u001b`) {
				t.Errorf("escaped twice:\n%s", out.String())
			}
			for _, line := range lines {
				if format == "json" && !json.Valid([]byte(line)) {
					t.Errorf("not JSON: %s", line)
				}
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode ✓":      "plain text, ünïcode ✓",
		"a\x1b[31mb":                 `a\x1b[31mb`,
		"cr\r\nlf\ttab\x00":          `cr\r\nlf\ttab\x00`,
		"del\x7f c1\u0085 rlo\u202e": `del\x7f c1\u0085 rlo\u202e`,
		"bad\xff\xfeutf8":            `bad\xff\xfeutf8`,
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// C1 controls are escaped; other two-byte characters starting with 0xC2
// (U+00A0 and up) are text and stay.
func TestC1Writer(t *testing.T) {
	var out bytes.Buffer
	in := "{\"m\":\"\u0085x\u00a0é\u009f\u0080\"}\xc2"
	n, err := c1Writer{&out}.Write([]byte(in))
	want := "{\"m\":\"\\u0085x\u00a0é\\u009f\\u0080\"}\xc2"
	if n != len(in) || err != nil || out.String() != want {
		t.Errorf("got %q (%d, %v), want %q", out.String(), n, err, want)
	}
}
