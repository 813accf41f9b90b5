package logx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func records(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		recs = append(recs, m)
	}
	return recs
}

// G8: runner lines become structured records; anything else stays a message.
func TestLineLogger(t *testing.T) {
	var out bytes.Buffer
	l := NewLineLogger(zerolog.New(&out), "stderr")
	l.Write([]byte(`{"level":"error","message":"boom","request_id":"r1","runner":"wsgi","pid":7,"ts":"x","worker":"w1"}` + "\n"))
	l.Write([]byte("plain "))
	l.Write([]byte("text\n{\"@message\": 5}\n"))
	l.Write([]byte("{not json\n"))
	recs := records(t, out.String())
	if len(recs) != 4 {
		t.Fatalf("%d records: %s", len(recs), out.String())
	}
	r := recs[0]
	if r["level"] != "error" || r["message"] != "boom" || r["req_id"] != "r1" || r["shim"] != "wsgi" || r["pid"] != nil || r["ts"] != nil || r["worker"] != nil {
		t.Errorf("record 0: %v", r)
	}
	if recs[1]["message"] != "plain text" || recs[1]["stream"] != "stderr" {
		t.Errorf("record 1: %v", recs[1])
	}
	if recs[2]["@message"] != float64(5) {
		t.Errorf("record 2: %v", recs[2])
	}
	if recs[3]["message"] != "{not json" {
		t.Errorf("record 3: %v", recs[3])
	}
	if l.LastError() != "boom" {
		t.Errorf("LastError %q", l.LastError())
	}
}

func TestLineLoggerCutsLongLines(t *testing.T) {
	var out bytes.Buffer
	l := NewLineLogger(zerolog.New(&out), "stderr")
	l.Write([]byte(strings.Repeat("x", maxLine+10)))
	l.Write([]byte("\n"))
	recs := records(t, out.String())
	if recs[0]["truncated"] != true || len(recs[0]["message"].(string)) != maxLine {
		t.Fatalf("first record: truncated=%v len=%d", recs[0]["truncated"], len(recs[0]["message"].(string)))
	}
}
