package main

import (
	"os"
	"strings"
	"testing"
	"time"

	bridgev1 "bridge/proto/bridge/v1"
)

func TestParseSwitches(t *testing.T) {
	status := "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n"
	if got := parseSwitches(status); got != 15 {
		t.Fatalf("parseSwitches = %d, want 15", got)
	}
	if got := parseSwitches("Name:\tx\n"); got != 0 {
		t.Fatalf("no switch lines: %d, want 0", got)
	}
}

func TestOwnProcess(t *testing.T) {
	s := sampleTree(os.Getpid())
	p, ok := s.procs[os.Getpid()]
	if !ok || p.start == "" || len(p.switches) == 0 {
		t.Fatalf("own process not sampled: %+v", s)
	}
	if s.threads() < 1 {
		t.Fatalf("threads = %d", s.threads())
	}
}

func TestDiff(t *testing.T) {
	a := treeSample{procs: map[int]procSample{
		1: {start: "5", ticks: 100, switches: map[string]int64{"1": 10, "2": 20}},
		2: {start: "6", ticks: 50, switches: map[string]int64{"2": 7}}, // gone by the end
	}}
	b := treeSample{procs: map[int]procSample{
		1: {start: "5", ticks: 150, switches: map[string]int64{"1": 15, "3": 4}}, // thread 2 exited, 3 new
		3: {start: "9", ticks: 10, switches: map[string]int64{"3": 2}},           // started meanwhile
	}}
	d := b.diff(a)
	if d.cpu != 600*time.Millisecond {
		t.Errorf("cpu = %v, want 600ms", d.cpu)
	}
	if d.switches != 5+4+2 {
		t.Errorf("switches = %d, want 11", d.switches)
	}
	if d.gone != 2 {
		t.Errorf("gone = %d, want 2 (a thread and a process's thread)", d.gone)
	}
}

func TestParseCPULine(t *testing.T) {
	m := parseCPULine("cpu  10 1 5 100 2 3 4 7 0 0")
	if m.busy != 10+1+5+3+4 || m.total != 10+1+5+100+2+3+4+7 {
		t.Fatalf("parseCPULine = %+v", m)
	}
}

func TestHelloFrame(t *testing.T) {
	f := helloFrame("/hello?x=1")
	if !f.End || f.Head == nil || len(f.Body) != 0 {
		t.Fatalf("want one frame with head and end, no body: %v", f)
	}
	vars := map[string]string{}
	for _, v := range f.Head.Vars {
		vars[string(v.Name)] = string(v.Value)
	}
	if vars["REQUEST_METHOD"] != "GET" || vars["PATH_INFO"] != "/hello" || vars["QUERY_STRING"] != "x=1" {
		t.Fatalf("vars: %v", vars)
	}
}

type frames []*bridgev1.ResponseFrame

func (f *frames) Recv() (*bridgev1.ResponseFrame, error) {
	x := (*f)[0]
	*f = (*f)[1:]
	return x, nil
}

func TestReadResponse(t *testing.T) {
	ok := frames{{Head: &bridgev1.ResponseHead{Status: 200}, Body: []byte("Hello, "), End: false},
		{Body: []byte("World!"), End: true}}
	if err := readResponse(&ok, true); err != nil {
		t.Fatal(err)
	}
	bad := frames{{Head: &bridgev1.ResponseHead{Status: 500}, Body: []byte("x"), End: true}}
	if err := readResponse(&bad, true); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("want a wrong-response error, got %v", err)
	}
	failed := frames{{Error: &bridgev1.Error{Message: "boom"}, End: true}}
	if err := readResponse(&failed, false); err == nil {
		t.Fatal("want the runner's error")
	}
}
