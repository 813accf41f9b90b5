// Command slotload measures a runner's Slot transport without nginx or
// bridge's fronts: it starts one runner exactly as `bridge serve` does
// (supervise.StartProcess: the same environment, go-plugin handshake and
// gRPC dial options), opens K Slot streams and, on every one of them, sends
// the hello request (one RequestFrame with head and end, GET /hello to the
// micro app in bench/apps/<lang>/) and reads the response to its end, again
// and again, for --duration after --warmup. It reports requests per second,
// the runner's CPU µs and context switches per request (every thread of the
// runner's process tree, from /proc) and its own CPU µs per request.
//
//	go run ./bench/slotload --runner python:micro:application --chdir bench/apps/python --slots 8
//	BRIDGE_LOG_LEVEL=debug go run ./bench/slotload --runner perl:micro.psgi --chdir bench/apps/perl
//
// The environment passes through to the runner (BRIDGE_LOG_LEVEL,
// BRIDGE_RACK_SPEC, BRIDGE_RB_YJIT…), as it does under bridge.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/cli"
	"bridge/bridge/supervise"
	bridgev1 "bridge/proto/bridge/v1"
	"bridge/runners"
)

// hello is what bench/apps/*/micro.* answer to GET /hello.
const hello = "Hello, World!"

type options struct {
	runner, chdir, interpreter, path string
	slots, threads                   int
	duration, warmup, startTimeout   time.Duration
	json                             bool
	logLevel                         string
}

// Result is one measurement, as --json prints it.
type Result struct {
	Runner          string  `json:"runner"`
	Language        string  `json:"language"`
	Server          string  `json:"server"` // the runner's Describe server field (its transport)
	Env             string  `json:"env,omitempty"`
	Slots           int     `json:"slots"`
	SlotsOffered    int     `json:"slots_offered"`
	Threads         int     `json:"threads"`
	DurationS       float64 `json:"duration_s"`
	Requests        int64   `json:"requests"`
	RPS             float64 `json:"rps"`
	MeanLatencyUS   float64 `json:"mean_latency_us"`
	RunnerCPUUS     float64 `json:"runner_cpu_us_per_req"`
	RunnerSwitches  float64 `json:"runner_switches_per_req"`
	RunnerThreads   int     `json:"runner_threads"`
	ThreadsGone     int     `json:"runner_threads_gone"`
	ClientCPUUS     float64 `json:"client_cpu_us_per_req"`
	ClientSwitches  float64 `json:"client_switches_per_req"`
	OtherCPUPct     float64 `json:"other_cpu_pct"` // the rest of the machine meanwhile, % of all CPUs
	Errors          int64   `json:"errors"`
	FirstError      string  `json:"first_error,omitempty"`
	RunnerPID       int     `json:"runner_pid"`
	RunnerProcesses int     `json:"runner_processes"`
}

func main() {
	o := options{}
	flag.StringVar(&o.runner, "runner", "", "the app, as bridge's --runner: python:micro:application, perl:micro.psgi, ruby:micro.ru, exec:CMD")
	flag.StringVar(&o.chdir, "chdir", ".", "directory to run the app in")
	flag.StringVar(&o.interpreter, "interpreter", "", "interpreter (default: found as bridge finds it)")
	flag.StringVar(&o.path, "path", "/hello", "request path; the response body must be \"Hello, World!\" when it is /hello")
	flag.IntVar(&o.slots, "slots", 1, "Slot streams kept busy at once")
	flag.IntVar(&o.threads, "threads", 1, "app threads (BRIDGE_THREADS); BRIDGE_SLOTS is max(slots, threads)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured window")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "load before the window, not measured")
	flag.DurationVar(&o.startTimeout, "start-timeout", time.Minute, "how long the runner may take to load the app")
	flag.BoolVar(&o.json, "json", false, "print one JSON object instead of a line")
	flag.StringVar(&o.logLevel, "log-level", "warn", "the runner's BRIDGE_LOG_LEVEL; its lines go to stderr")
	flag.Parse()
	if o.runner == "" || o.slots < 1 || o.threads < 1 {
		fmt.Fprintln(os.Stderr, "slotload: --runner is required; --slots and --threads are at least 1")
		flag.Usage()
		os.Exit(2)
	}
	res, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slotload:", err)
		os.Exit(1)
	}
	if o.json {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	} else {
		fmt.Println(res.Line())
	}
	if res.Errors > 0 {
		os.Exit(1)
	}
}

// Line is the one-line text form of a result.
func (r *Result) Line() string {
	env := ""
	if r.Env != "" {
		env = " " + r.Env
	}
	s := fmt.Sprintf("%s%s slots=%d threads=%d: %.0f req/s, mean %.0f µs; runner %.1f µs/req, %.2f switches/req (%d threads); client %.1f µs/req, %.2f switches/req; other CPU %.0f %%",
		r.Runner, env, r.Slots, r.Threads, r.RPS, r.MeanLatencyUS, r.RunnerCPUUS, r.RunnerSwitches,
		r.RunnerThreads, r.ClientCPUUS, r.ClientSwitches, r.OtherCPUPct)
	if r.SlotsOffered < r.Slots {
		s += fmt.Sprintf("; the runner offers only %d slots", r.SlotsOffered)
	}
	if r.ThreadsGone > 0 {
		s += fmt.Sprintf("; %d runner threads exited in the window (their switches are not counted)", r.ThreadsGone)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf("; %d errors, first: %s", r.Errors, r.FirstError)
	}
	return s
}

// command resolves --runner as bridge serve does (interpreter discovery,
// shim extraction), for built-in languages and exec runners.
func command(ctx context.Context, o options) (supervise.Command, error) {
	spec, err := runners.ParseSpec(o.runner)
	if err != nil {
		return supervise.Command{}, err
	}
	return cli.RunnerCommand(ctx, spec, o.chdir, o.interpreter, o.logLevel)
}

func run(ctx context.Context, o options) (*Result, error) {
	cmd, err := command(ctx, o)
	if err != nil {
		return nil, err
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)
	p, err := supervise.StartProcess(ctx, supervise.ProcessConfig{
		Command: cmd, Name: "slotload", Threads: o.threads, Slots: max(o.slots, o.threads),
		Workers: 1, StartTimeout: o.startTimeout, Log: log,
	})
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	info := p.Info()
	res := &Result{Runner: o.runner, Language: info.GetLanguage(), Server: info.GetServer(),
		Slots: o.slots, SlotsOffered: int(info.GetSlots()), Threads: o.threads, RunnerPID: p.PID(),
		Env: passedEnv()}
	if res.SlotsOffered == 0 {
		res.SlotsOffered = o.threads // the contract: one stream per thread
	}

	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var done atomic.Int64
	errs := &firstError{}
	var wg sync.WaitGroup
	for i := range o.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(lctx, p.RPC(), i, o.path, &done, errs)
		}()
	}
	time.Sleep(o.warmup)
	if errs.n.Load() > 0 {
		stop()
		wg.Wait()
		return nil, fmt.Errorf("during warm-up: %d errors, first: %s", errs.n.Load(), errs.get())
	}
	root := p.PID()
	n0, t0, self0, m0 := done.Load(), time.Now(), selfUsage(), machineTicks()
	run0 := sampleTree(root)
	time.Sleep(o.duration)
	run1 := sampleTree(root)
	n1, wall, self1, m1 := done.Load(), time.Since(t0), selfUsage(), machineTicks()
	stop()
	wg.Wait()

	n := n1 - n0
	res.DurationS = wall.Seconds()
	res.Requests = n
	res.Errors = errs.n.Load()
	res.FirstError = errs.get()
	if n > 0 {
		d := run1.diff(run0)
		res.RPS = float64(n) / wall.Seconds()
		res.MeanLatencyUS = float64(o.slots) * wall.Seconds() * 1e6 / float64(n)
		res.RunnerCPUUS = d.cpu.Seconds() * 1e6 / float64(n)
		res.RunnerSwitches = float64(d.switches) / float64(n)
		res.RunnerThreads = run1.threads()
		res.ThreadsGone = d.gone
		res.RunnerProcesses = len(run1.procs)
		res.ClientCPUUS = (self1.cpu - self0.cpu).Seconds() * 1e6 / float64(n)
		res.ClientSwitches = float64(self1.switches-self0.switches) / float64(n)
		if total := m1.total - m0.total; total > 0 {
			ours := d.cpu + (self1.cpu - self0.cpu)
			busy := time.Duration(m1.busy-m0.busy) * time.Second / clockTick
			res.OtherCPUPct = max(0, 100*float64(busy-ours)/(float64(total)*float64(time.Second)/clockTick))
		}
	}
	return res, nil
}

// passedEnv lists the runner-affecting variables set in our environment.
func passedEnv() string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BRIDGE_PY_") || strings.HasPrefix(k, "BRIDGE_RACK_") ||
			strings.HasPrefix(k, "BRIDGE_PL_") || strings.HasPrefix(k, "BRIDGE_PERL_") ||
			strings.HasPrefix(k, "BRIDGE_RUBY_") {
			out = append(out, kv)
		}
	}
	return strings.Join(out, " ")
}

type firstError struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *firstError) add(err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = err.Error()
		e.mu.Unlock()
	}
}

func (e *firstError) get() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first
}

// helloFrame is the one frame of GET path, with the CGI variables bridge's
// fronts send for a request nginx passed on.
func helloFrame(path string) *bridgev1.RequestFrame {
	p, query, _ := strings.Cut(path, "?")
	vars := [][2]string{
		{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", path}, {"SCRIPT_NAME", ""},
		{"PATH_INFO", p}, {"QUERY_STRING", query}, {"SERVER_NAME", "127.0.0.1"},
		{"SERVER_PORT", "80"}, {"SERVER_PROTOCOL", "HTTP/1.1"}, {"REMOTE_ADDR", "127.0.0.1"},
		{"REMOTE_PORT", "40000"}, {"HTTP_HOST", "127.0.0.1"},
	}
	head := &bridgev1.RequestHead{UrlScheme: "http"}
	for _, v := range vars {
		head.Vars = append(head.Vars, &bridgev1.Var{Name: []byte(v[0]), Value: []byte(v[1])})
	}
	return &bridgev1.RequestFrame{Head: head, End: true}
}

// loop keeps one Slot stream busy until ctx ends: send the request, read
// the response to its end, count it, again. A failed stream is reopened.
func loop(ctx context.Context, rpc bridgev1.RunnerClient, slot int, path string, done *atomic.Int64, errs *firstError) {
	frame := helloFrame(path)
	prefix := "load-" + strconv.Itoa(slot) + "-"
	check := path == "/hello"
	for seq := 0; ctx.Err() == nil; {
		st, err := rpc.Slot(ctx)
		if err != nil {
			if ctx.Err() == nil {
				errs.add(fmt.Errorf("open slot: %w", err))
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		for ctx.Err() == nil {
			seq++
			frame.Head.RequestId = prefix + strconv.Itoa(seq)
			if err := st.Send(frame); err != nil {
				if ctx.Err() == nil {
					errs.add(fmt.Errorf("send: %w", err))
				}
				break
			}
			if err := readResponse(st, check); err != nil {
				if ctx.Err() == nil {
					errs.add(err)
				}
				break
			}
			done.Add(1)
		}
	}
}

type frameReceiver interface {
	Recv() (*bridgev1.ResponseFrame, error)
}

// readResponse reads frames up to end; with check, the response must be
// 200 with exactly the hello body.
func readResponse(st frameReceiver, check bool) error {
	var status uint32
	var body []byte
	for {
		f, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended before the response's end")
			}
			return fmt.Errorf("recv: %w", err)
		}
		if f.GetHead() != nil {
			status = f.GetHead().GetStatus()
		}
		if check {
			body = append(body, f.GetBody()...)
		}
		if f.GetError() != nil {
			return fmt.Errorf("runner error: %s", f.GetError().GetMessage())
		}
		if f.GetEnd() {
			break
		}
	}
	if check && (status != 200 || string(body) != hello) {
		return fmt.Errorf("wrong response: status %d, body %q", status, body)
	}
	return nil
}

// ---------------------------------------------------------------- /proc

type usage struct {
	cpu      time.Duration
	switches int64
}

// selfUsage is this process's CPU and context switches (all threads, also
// those that exited: getrusage keeps them).
func selfUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		switches: ru.Nvcsw + ru.Nivcsw}
}

type machine struct{ busy, total int64 }

// machineTicks is the first line of /proc/stat: busy (user, nice, system,
// irq, softirq) and all ticks over every CPU.
func machineTicks() machine {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machine{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

func parseCPULine(line string) machine {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machine{}
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	m := machine{busy: v[0] + v[1] + v[2] + v[5] + v[6]}
	for _, x := range v {
		m.total += x
	}
	return m
}

// procSample is one process of the runner's tree.
type procSample struct {
	start    string           // starttime, so a reused pid is not taken for the old one
	ticks    int64            // utime+stime of every thread, exited ones included
	switches map[string]int64 // per live thread
}

type treeSample struct{ procs map[int]procSample }

type treeDiff struct {
	cpu      time.Duration
	switches int64
	gone     int // threads there at the start and not at the end
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

func sampleTree(root int) treeSample {
	s := treeSample{procs: map[int]procSample{}}
	for _, pid := range tree(root) {
		ps, ok := sampleProc(pid)
		if ok {
			s.procs[pid] = ps
		}
	}
	return s
}

func (s treeSample) threads() int {
	n := 0
	for _, p := range s.procs {
		n += len(p.switches)
	}
	return n
}

// diff is what happened between a (earlier) and s, thread by thread for
// the switches; processes that ended meanwhile are lost, as in the bench.
func (s treeSample) diff(a treeSample) treeDiff {
	var d treeDiff
	for pid, b := range s.procs {
		old, ok := a.procs[pid]
		if !ok || old.start != b.start {
			old = procSample{}
		}
		d.cpu += time.Duration(b.ticks-old.ticks) * time.Second / clockTick
		for tid, n := range b.switches {
			d.switches += n - old.switches[tid]
		}
		for tid := range old.switches {
			if _, ok := b.switches[tid]; !ok {
				d.gone++
			}
		}
	}
	for pid, old := range a.procs {
		if b, ok := s.procs[pid]; !ok || b.start != old.start {
			d.gone += len(old.switches)
		}
	}
	return d
}

// statFields returns /proc/PID/stat's fields after the command name: [0]
// is state (field 3), [1] ppid, [11] utime, [12] stime, [19] starttime.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func sampleProc(pid int) (procSample, bool) {
	f := statFields(pid)
	if len(f) < 20 {
		return procSample{}, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps := procSample{start: f[19], ticks: ut + st, switches: threadSwitches(pid)}
	return ps, true
}

// threadSwitches is voluntary + nonvoluntary context switches of each live
// thread of pid (/proc/PID/task/TID/status).
func threadSwitches(pid int) map[string]int64 {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make(map[string]int64, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			continue // exited meanwhile
		}
		out[e.Name()] = parseSwitches(string(b))
	}
	return out
}

// parseSwitches sums the two ctxt_switches lines of a status file.
func parseSwitches(status string) int64 {
	var n int64
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// tree is root and its descendants.
func tree(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	kids := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			kids[ppid] = append(kids[ppid], pid)
		}
	}
	out, todo := []int{}, []int{root}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		out = append(out, p)
		todo = append(todo, kids[p]...)
	}
	return out
}
