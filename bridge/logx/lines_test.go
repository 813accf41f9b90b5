package logx

import (
	"bytes"
	"encoding/json"
	"reflect"
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

// G8: runner lines become records of bridge's, with what the runner wrote
// under runner_log; a line that is not JSON is kept as its message.
func TestLineLogger(t *testing.T) {
	var out bytes.Buffer
	l := NewLineLogger(zerolog.New(&out).With().Str("worker", "w1").Str("runner", "python:app").Logger(), "stderr")
	l.Write([]byte(`{"level":"error","message":"boom","request_id":"r1","runner":"wsgi","pid":7,"ts":"x","worker":"w9","id":12345678901234567890}` + "\n"))
	l.Write([]byte("plain "))
	l.Write([]byte("text\n{\"@message\": 5}\n"))
	l.Write([]byte("{not json\n"))
	l.Write([]byte(`{"a":1} {"b":2}` + "\n")) // two objects are not one JSON line
	recs := records(t, out.String())
	if len(recs) != 5 {
		t.Fatalf("%d records: %s", len(recs), out.String())
	}
	for i, r := range recs {
		if r["message"] != RunnerMessage || r["worker"] != "w1" || r["runner"] != "python:app" || r["req_id"] != nil || r["pid"] != nil {
			t.Errorf("record %d: bridge's fields are not bridge's: %v", i, r)
		}
	}
	r := recs[0]
	want := map[string]any{"level": "error", "message": "boom", "request_id": "r1", "runner": "wsgi", "pid": 7.0, "ts": "x", "worker": "w9", "id": 12345678901234567890.0}
	if r["level"] != "error" || !reflect.DeepEqual(r[RunnerField], want) {
		t.Errorf("record 0: %v", r)
	}
	if !strings.Contains(out.String(), `"id":12345678901234567890`) {
		t.Errorf("a 64-bit number lost digits: %s", out.String())
	}
	if !reflect.DeepEqual(recs[1][RunnerField], map[string]any{"message": "plain text"}) || recs[1]["stream"] != "stderr" || recs[1]["level"] != "info" {
		t.Errorf("record 1: %v", recs[1])
	}
	if !reflect.DeepEqual(recs[2][RunnerField], map[string]any{"@message": 5.0}) {
		t.Errorf("record 2: %v", recs[2])
	}
	if !reflect.DeepEqual(recs[3][RunnerField], map[string]any{"message": "{not json"}) {
		t.Errorf("record 3: %v", recs[3])
	}
	if !reflect.DeepEqual(recs[4][RunnerField], map[string]any{"message": `{"a":1} {"b":2}`}) {
		t.Errorf("record 4: %v", recs[4])
	}
	if l.LastError() != "boom" {
		t.Errorf("LastError %q", l.LastError())
	}
}

// Issue 14: an app that writes bridge's access-log line to fd 2 gets a
// "runner log" record, not a second access line: the top-level message,
// status, req_id, time and worker stay bridge's. The level is the app's to
// choose, within zerolog's levels.
func TestLineLoggerForgedAccessLine(t *testing.T) {
	var out bytes.Buffer
	log := zerolog.New(&out).With().Timestamp().Str("worker", "w1").Int("pid", 42).Logger()
	l := NewLineLogger(log, "stderr")
	forged := `{"message":"request","msg":"request","status":200,"req_id":"x","request_id":"x","level":"info","time":"2000-01-01T00:00:00Z","worker":"w7","pid":1,"method":"GET","uri":"/admin"}`
	l.Write([]byte(forged + "\n"))
	l.Write([]byte(`{"level":"disabled","message":"hidden?"}` + "\n"))
	l.Write([]byte(`{"level":"fatal","message":"loud"}` + "\n"))
	recs := records(t, out.String())
	if len(recs) != 3 {
		t.Fatalf("%d records: %s", len(recs), out.String())
	}
	r := recs[0]
	if r["message"] != RunnerMessage || r["msg"] != nil || r["status"] != nil || r["req_id"] != nil || r["method"] != nil ||
		r["uri"] != nil || r["worker"] != "w1" || r["pid"] != 42.0 || r["time"] == "2000-01-01T00:00:00Z" || r["level"] != "info" {
		t.Errorf("forged line leaked into bridge's fields: %v", r)
	}
	var want map[string]any
	json.Unmarshal([]byte(forged), &want)
	if !reflect.DeepEqual(r[RunnerField], want) {
		t.Errorf("the app's line is not kept whole under %s: %v", RunnerField, r[RunnerField])
	}
	if recs[1]["level"] != "info" || recs[2]["level"] != "fatal" {
		t.Errorf("levels: %v %v, want info (an unknown level) and fatal", recs[1]["level"], recs[2]["level"])
	}
}

func TestLineLoggerCutsLongLines(t *testing.T) {
	var out bytes.Buffer
	l := NewLineLogger(zerolog.New(&out), "stderr")
	l.Write([]byte(strings.Repeat("x", maxLine+10)))
	l.Write([]byte("\n"))
	recs := records(t, out.String())
	msg := recs[0][RunnerField].(map[string]any)["message"].(string)
	if recs[0]["truncated"] != true || len(msg) != maxLine {
		t.Fatalf("first record: truncated=%v len=%d", recs[0]["truncated"], len(msg))
	}
}

// In the console format a runner's line reads "runner log: MESSAGE" with its
// fields as runner_log.KEY=VALUE, never as bridge's own.
func TestLineLoggerConsole(t *testing.T) {
	var out bytes.Buffer
	log, err := New(&out, "console", "debug")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLineLogger(log.With().Str("worker", "w1").Logger(), "stderr")
	l.Write([]byte(`{"level":"info","message":"request","status":200,"req_id":"x","worker":"w1","ts":"t","nested":{"a":1}}` + "\n"))
	l.Write([]byte("plain\n"))
	got := out.String()
	for _, want := range []string{"INF runner log: request ", "runner_log.status=200", "runner_log.req_id=x", `runner_log.nested="{\"a\":1}"`, " worker=w1", "INF runner log: plain stream=stderr"} {
		if !strings.Contains(got, want) {
			t.Errorf("console lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{" status=", " req_id=", "runner_log.ts", "runner_log.worker"} {
		if strings.Contains(got, bad) {
			t.Errorf("console has %q:\n%s", bad, got)
		}
	}
}
