package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestAttribute(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	events := []event{
		{At: at(10), Runner: "python", Kind: "kill", PID: 100},
		{At: at(20), Runner: "perl", Kind: "reload", PID: 200},
		{At: at(30), Runner: "perl", Kind: "kill", PID: 0, Note: "no runner found"},
		{At: at(40), Runner: "ruby", Kind: "kill", PID: 300},
		{At: at(50), Runner: "java", Kind: "kill", PID: 400, Gone: at(50.005)},
	}
	cases := []struct {
		name     string
		f        failure
		explains bool
	}{
		{"in flight at the kill", failure{Runner: "python", Start: at(9.5), End: at(10.2)}, true},
		{"started after the kill", failure{Runner: "python", Start: at(10.1), End: at(10.3)}, false},
		{"ended before the kill", failure{Runner: "python", Start: at(9), End: at(9.9)}, false},
		{"kill of another bridge", failure{Runner: "perl", Start: at(9.5), End: at(10.5)}, false},
		{"a reload explains nothing", failure{Runner: "perl", Start: at(19), End: at(21)}, false},
		{"a kill that found no runner", failure{Runner: "perl", Start: at(29), End: at(31)}, false},
		{"long request over a kill", failure{Runner: "ruby", Start: at(1), End: at(59)}, true},
		{"start exactly at the kill", failure{Runner: "ruby", Start: at(40), End: at(41)}, false},
		{"sent while the killed runner died", failure{Runner: "java", Start: at(50.004), End: at(50.02)}, true},
		{"sent after it was gone", failure{Runner: "java", Start: at(50.006), End: at(50.02)}, false},
		{"logged on the killed worker", failure{Runner: "ruby", Start: at(39), End: at(41), WorkerPID: 300}, true},
		{"logged on another worker", failure{Runner: "ruby", Start: at(39), End: at(41), WorkerPID: 301}, false},
		{"sent to the killed process before bridge knew", failure{Runner: "java", Start: at(50.05), End: at(50.06), WorkerPID: 400}, true},
		{"sent to it long after", failure{Runner: "java", Start: at(50.2), End: at(50.3), WorkerPID: 400}, false},
		{"after it was gone, on another worker", failure{Runner: "java", Start: at(50.05), End: at(50.06), WorkerPID: 401}, false},
	}
	fails := make([]failure, len(cases))
	want := 0
	for i, c := range cases {
		fails[i] = c.f
		if !c.explains {
			want++
		}
	}
	if got := attribute(fails, events); got != want {
		t.Errorf("unexplained = %d, want %d", got, want)
	}
	for i, c := range cases {
		if got := fails[i].Kill != nil; got != c.explains {
			t.Errorf("%s: explained = %v, want %v", c.name, got, c.explains)
		}
		if fails[i].Kill != nil && fails[i].Kill.Runner != c.f.Runner {
			t.Errorf("%s: explained by a kill of %s", c.name, fails[i].Kill.Runner)
		}
	}
}

func TestNearest(t *testing.T) {
	t0 := time.Now()
	events := []event{
		{At: t0.Add(5 * time.Second), Runner: "perl", Kind: "reload"},
		{At: t0.Add(9 * time.Second), Runner: "python", Kind: "reload"},
		{At: t0.Add(20 * time.Second), Runner: "perl", Kind: "kill", PID: 1},
	}
	f := failure{Runner: "perl", Start: t0.Add(7 * time.Second), End: t0.Add(8 * time.Second)}
	if e := nearest(f, events); e == nil || e.Kind != "reload" || e.Runner != "perl" {
		t.Fatalf("nearest = %+v, want perl's reload", e)
	}
	if e := nearest(failure{Runner: "ruby"}, events); e != nil {
		t.Fatalf("nearest for a bridge without events = %+v", e)
	}
}

func TestAnnotate(t *testing.T) {
	log := `{"level":"info","worker":"g2.w1","pid":4242,"message":"worker ready"}
{"level":"info","worker":"g2.w2","pid":4243,"message":"worker ready"}
{"level":"info","req_id":"soak-ruby-hello-1","status":200,"worker":"g2.w2","message":"request"}
{"level":"warn","req_id":"soak-ruby-hello-2","error":"Bad Gateway: runner unavailable","status":502,"worker":"g2.w1","message":"request","time":"2026-12-05T05:37:22.5Z"}
{"level":"info","req_id":"soak-attack-slowread-7","status":499,"worker":"g2.w1","duration_ms":40000,"message":"request","time":"2026-12-05T05:37:30Z"}
{"level":"info","req_id":"soak-attack-flood-8","status":200,"worker":"g2.w2","duration_ms":20000,"message":"request","time":"2026-12-05T05:37:30Z"}
not json
`
	path := t.TempDir() + "/bridge-ruby.log"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
	fails := []failure{
		{Runner: "ruby", ID: "soak-ruby-hello-2", Start: at("2026-12-05T05:37:01Z"), End: at("2026-12-05T05:37:23Z")},
		{Runner: "ruby", ID: "soak-ruby-hello-9"}, // not in the log
		{Runner: "perl", ID: "soak-ruby-hello-2"}, // another bridge's
	}
	names := annotate(path, "ruby", fails)
	if f := fails[0]; f.Worker != "g2.w1" || f.WorkerPID != 4242 || !strings.Contains(f.Logged, "status 502: Bad Gateway") ||
		f.Behind != "soak-attack-slowread-7" {
		t.Errorf("annotated: %+v", f)
	}
	if names[4243] != "g2.w2" {
		t.Errorf("names = %v", names)
	}
	if f := fails[1]; f.Worker != "" || f.WorkerPID != 0 {
		t.Errorf("a request the log lacks: %+v", f)
	}
	if f := fails[2]; f.Worker != "" {
		t.Errorf("another bridge's failure: %+v", f)
	}
}
