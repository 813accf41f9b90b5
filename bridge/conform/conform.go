// Package conform is the runner conformance kit: it starts a runner the way
// bridge does (supervise.StartProcess: the same environment, go-plugin
// handshake and gRPC connection), sends it requests for the kit app
// (runners/kit/README.md) frame by frame, and checks every rule of the
// runner contract (runners/CONTRACT.md, items C1…) and the cross-cutting
// items of docs/conformance.md that a runner alone decides.
package conform

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/logx"
	"bridge/bridge/supervise"
	bridgev1 "bridge/proto/bridge/v1"
)

// Config says which runner to check and how to start it.
type Config struct {
	// Command starts the runner, as `bridge serve` would for the same spec.
	Command supervise.Command
	// Spec is the --runner value, for the report.
	Spec string
	// Threads and Slots are told to the runner (BRIDGE_THREADS, BRIDGE_SLOTS).
	// The pipelining checks need Slots > Threads.
	Threads, Slots int
	// StartTimeout bounds each runner start.
	StartTimeout time.Duration
	// Only, if set, runs the checks whose names contain one of its words.
	Only []string
	// Log, if set, receives the runners' stderr lines as bridge logs them.
	Log io.Writer
}

// Result is the outcome of one check.
type Result struct {
	Name    string
	IDs     string
	Outcome string // "pass", "FAIL" or "n/a"
	Took    time.Duration
	Detail  string // why it failed, or why it does not apply
}

// kit is one conformance run: its config, the shared runner most checks
// use, and what every runner it started logged.
type kit struct {
	cfg    Config
	ctx    context.Context
	logs   *logTap
	seq    atomic.Int64
	shared *proc
}

// proc is a runner the kit started, with the worker name its log lines carry.
type proc struct {
	*supervise.Process
	name string
}

// Run runs every check against the runner and returns the results in order.
// An error means the kit could not run at all (the runner did not start).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Threads < 1 {
		cfg.Threads = 1
	}
	if cfg.Slots < cfg.Threads {
		cfg.Slots = cfg.Threads
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	k := &kit{cfg: cfg, ctx: ctx, logs: &logTap{copy: cfg.Log}}
	defer k.stopShared()
	// A runner that cannot start fails every check for the same reason:
	// say it once.
	if _, err := k.runner(); err != nil {
		return nil, err
	}
	var out []Result
	for _, c := range checks {
		if !selected(c.Name, cfg.Only) {
			continue
		}
		out = append(out, k.run(c))
		if ctx.Err() != nil {
			break
		}
	}
	return out, ctx.Err()
}

func selected(name string, only []string) bool {
	if len(only) == 0 {
		return true
	}
	for _, w := range only {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// notApplicable is returned by a check whose rule the runner opted out of
// in a way the contract allows (e.g. no pipelined slots).
type notApplicable string

func (n notApplicable) Error() string { return string(n) }

func (k *kit) run(c check) Result {
	r := Result{Name: c.Name, IDs: c.IDs}
	start := time.Now()
	err := c.Run(k)
	r.Took = time.Since(start)
	switch e := err.(type) {
	case nil:
		r.Outcome = "pass"
	case notApplicable:
		r.Outcome, r.Detail = "n/a", string(e)
	default:
		r.Outcome, r.Detail = "FAIL", err.Error()
	}
	return r
}

// start starts a runner as bridge does, with the kit's threads and slots.
func (k *kit) start() (*proc, error) {
	name := fmt.Sprintf("kit%d", k.seq.Add(1))
	log := zerolog.New(k.logs).With().Str("worker", name).Logger()
	p, err := supervise.StartProcess(k.ctx, supervise.ProcessConfig{
		Command: k.cfg.Command, Name: name, Threads: k.cfg.Threads, Slots: k.cfg.Slots,
		Workers: 1, StartTimeout: k.cfg.StartTimeout, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("the runner did not start: %w", err)
	}
	return &proc{Process: p, name: name}, nil
}

// runner returns the shared runner, starting a new one if there is none or
// the last one has exited.
func (k *kit) runner() (*proc, error) {
	if k.shared != nil && !k.shared.Exited() {
		return k.shared, nil
	}
	k.stopShared()
	p, err := k.start()
	if err != nil {
		return nil, err
	}
	k.shared = p
	return p, nil
}

func (k *kit) stopShared() {
	if k.shared != nil {
		k.shared.Kill()
		k.shared = nil
	}
}

// id makes a request id unique within the run.
func (k *kit) id(what string) string {
	return fmt.Sprintf("kit-%s-%d", what, k.seq.Add(1))
}

// do sends one request on a new Slot stream of p and reads the response.
func (k *kit) do(p *proc, id string, r req, timeout time.Duration) *reply {
	ctx, cancel := context.WithTimeout(k.ctx, timeout)
	defer cancel()
	s, err := p.RPC().Slot(ctx)
	if err != nil {
		return &reply{id: id, err: err}
	}
	rep, sent := exchange(ctx, s, id, r, nil)
	cancel() // a send still waiting for flow control gives up
	if err := <-sent; err != nil && rep.err == nil && rep.last() != nil && !rep.last().End {
		rep.err = fmt.Errorf("send: %w", err)
	}
	return rep
}

// get is do for a GET without a body.
func (k *kit) get(p *proc, id, path string) *reply {
	return k.do(p, id, req{method: "GET", path: path}, 10*time.Second)
}

// stats asks the kit app for its counters for id.
func (k *kit) stats(p *proc, id string) (stats, error) {
	rep := k.get(p, k.id("stats"), "/stats?id="+id)
	if err := okResponse(rep); err != nil {
		return stats{}, fmt.Errorf("/stats: %w", err)
	}
	return parseStats(rep.body())
}

// describe calls Describe with a short deadline.
func (k *kit) describe(p *proc) (*bridgev1.DescribeResponse, error) {
	ctx, cancel := context.WithTimeout(k.ctx, 3*time.Second)
	defer cancel()
	return p.RPC().Describe(ctx, &bridgev1.DescribeRequest{})
}

// waitGone polls Describe until id is no longer running, for up to d.
func (k *kit) waitGone(p *proc, id string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		info, err := k.describe(p)
		if err != nil {
			return fmt.Errorf("Describe: %w", err)
		}
		if !slices.Contains(info.Running, id) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("request %s is still in Describe.running %v after %v", id, info.Running, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logTap keeps every line the kit's runners logged (bridge's JSON form),
// and copies them to copy if set.
type logTap struct {
	copy  io.Writer
	mu    sync.Mutex
	lines []map[string]any
}

func (t *logTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.copy != nil {
		_, _ = t.copy.Write(p)
	}
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			t.lines = append(t.lines, rec)
		}
	}
	return len(p), nil
}

// find returns the lines that worker's runner wrote on stderr (what bridge
// keeps under logx.RunnerField: the runner's own record, or {"message":
// LINE} for a plain line) for which match is true.
func (t *logTap) find(worker string, match func(map[string]any) bool) []map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []map[string]any
	for _, l := range t.lines {
		r, _ := l[logx.RunnerField].(map[string]any)
		if w, _ := l["worker"].(string); r != nil && (worker == "" || w == worker) && match(r) {
			out = append(out, r)
		}
	}
	return out
}

// waitLog waits up to d for a runner line of worker that matches.
func (t *logTap) waitLog(worker string, d time.Duration, match func(map[string]any) bool) []map[string]any {
	deadline := time.Now().Add(d)
	for {
		if got := t.find(worker, match); len(got) > 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
