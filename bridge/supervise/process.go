// Package supervise owns the runner processes: it starts them as go-plugin
// plugins, waits until they answer Describe, hands them to dispatch, and
// replaces the ones that die.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"bridge/bridge/logx"
	bridgev1 "bridge/proto/bridge/v1"
	"bridge/runners"
)

// Command is how to start one runner process.
type Command struct {
	Path string   // executable (interpreter or exec runner)
	Args []string // arguments after Path
	Dir  string   // working directory ("" = bridge's)
	Env  []string // added to bridge's environment, overriding it
}

// ProcessConfig is what StartProcess needs to start one runner.
type ProcessConfig struct {
	Command Command
	// Name is the worker's name, for logs and BRIDGE_WORKER.
	Name string
	// Threads, Slots and Workers are told to the runner (BRIDGE_THREADS,
	// BRIDGE_SLOTS, BRIDGE_WORKERS).
	Threads, Slots, Workers int
	// Grace is told to the runner (BRIDGE_GRACE): how long requests in
	// flight may take to finish once it is asked to stop. 0 means
	// DefaultGrace, the runners' own default.
	Grace time.Duration
	// StartTimeout bounds the handshake and the first Describe.
	StartTimeout time.Duration
	// Log receives the runner's stderr lines, re-logged.
	Log zerolog.Logger
}

// DefaultGrace is what a runner waits for requests in flight when
// BRIDGE_GRACE is not set (bridge's --grace default too).
const DefaultGrace = 30 * time.Second

// Process is one started runner: a go-plugin client, its gRPC connection
// and the runner's first Describe answer.
type Process struct {
	client *plugin.Client
	conn   plugin.ClientProtocol
	rpc    bridgev1.RunnerClient
	info   *bridgev1.DescribeResponse
	run    *procRunner
	stdout *stdoutRecord
	stderr *logx.LineLogger
}

// StartProcess execs the runner, completes the go-plugin handshake and calls
// Describe. Whatever fails, nothing is left running.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	cmd, log := cfg.Command, cfg.Log
	c := exec.Command(cmd.Path, cmd.Args...)
	c.Dir = cmd.Dir
	// go-plugin appends the host environment after ours when asked to, and
	// the last duplicate wins; so we build the whole environment ourselves.
	c.Env = append(os.Environ(), cmd.Env...)
	c.Env = append(c.Env, mallocDefaults(c.Env)...)
	grace := cfg.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	c.Env = append(c.Env,
		// Always set, in the one format every runner parses (Go's
		// Duration.String, runners/CONTRACT.md): bridge's own
		// BRIDGE_GRACE=30s from the environment must not reach a runner
		// unparsed, and it would otherwise not learn --grace at all.
		"BRIDGE_GRACE="+grace.String(),
		"BRIDGE_WORKER="+cfg.Name,
		"BRIDGE_THREADS="+strconv.Itoa(cfg.Threads),
		// Slot streams bridge may open at once; those past the threads wait
		// their turn inside the runner (runners/CONTRACT.md).
		"BRIDGE_SLOTS="+strconv.Itoa(cfg.Slots),
		"BRIDGE_WORKERS="+strconv.Itoa(cfg.Workers),
	)
	// Own process group, so a stuck runner and its children can be killed
	// together; and die with bridge even if bridge is SIGKILLed.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	p := &Process{stderr: logx.NewLineLogger(log, "stderr")}
	p.stdout = &stdoutRecord{onStray: func(b []byte) {
		log.Warn().Str("stdout", string(b)).
			Msg("runner wrote to stdout after its handshake line; apps must print to stderr (runners/CONTRACT.md)")
	}}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: runners.Handshake,
		Plugins:         runners.PluginMap(),
		// go-plugin hands us its environment (cookie, protocol versions,
		// socket directory) in a placeholder command; ours runs the runner.
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			c.Env = append(c.Env, spec.Env...)
			r, err := newProcRunner(c, p.stdout)
			p.run = r
			return r, err
		},
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     cfg.StartTimeout,
		// go-plugin parses plugin stderr as hclog JSON unless its logger is
		// off; an app's own JSON on stderr could then crash it. We read
		// stderr ourselves through Stderr.
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
		Stderr: p.stderr,
		// Fixed flow-control windows turn off gRPC's BDP estimator, whose
		// pings cost a write and a read per response on a local socket,
		// and are large enough that a 1 MiB body chunk never waits for a
		// window update.
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithInitialWindowSize(4 << 20),
			grpc.WithInitialConnWindowSize(16 << 20),
			grpc.WithReadBufferSize(grpcBuffer),
			grpc.WithWriteBufferSize(grpcBuffer),
		},
	})
	fail := func(err error) (*Process, error) {
		p.Kill()
		return nil, err
	}
	began := time.Now()
	conn, err := p.client.Client()
	if err != nil {
		return fail(p.startError(err, cfg, time.Since(began)))
	}
	p.conn = conn
	raw, err := conn.Dispense(runners.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense runner: %w", err))
	}
	p.rpc = raw.(bridgev1.RunnerClient)
	dctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	p.info, err = p.rpc.Describe(dctx, &bridgev1.DescribeRequest{})
	if err != nil {
		return fail(fmt.Errorf("runner did not answer Describe: %w", err))
	}
	return p, nil
}

// startError turns a failed start into one line that says what the
// runner did, instead of go-plugin's multi-line message: printed something
// else first on stdout, exited before its handshake (with its own last
// error line, e.g. an import error or a refused cookie), wrote nothing in
// time, or named a protocol or version bridge does not speak.
func (p *Process) startError(err error, cfg ProcessConfig, waited time.Duration) error {
	path := cfg.Command.Path
	if p.PID() == 0 {
		var pe *fs.PathError // "fork/exec PATH: reason": PATH is said once
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("runner %s could not be started: %w", path, err)
	}
	// Give the runner a moment to exit and the stderr reader to take its
	// last words.
	for i := 0; i < 20 && !p.client.Exited(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	last := p.stderr.LastError()
	first, complete := p.stdout.Handshake()
	first = strings.TrimRight(first, "\r\n")
	if first != "" || complete {
		if problem := handshakeProblem(first); problem != "" {
			return fmt.Errorf("runner %s: %s", path, problem)
		}
	}
	// go-plugin kills a runner that is out of time: that is no exit of its own.
	if !complete && waited >= cfg.StartTimeout {
		return fmt.Errorf("runner %s wrote no handshake line within --start-timeout (%s)", path, cfg.StartTimeout)
	}
	if status := p.run.exitStatus(); status != "" && !complete {
		if last != "" {
			return fmt.Errorf("runner %s %s before its handshake line: %s", path, status, last)
		}
		return fmt.Errorf("runner %s %s before its handshake line", path, status)
	}
	if last != "" {
		return fmt.Errorf("runner %s failed to start: %s", path, last)
	}
	return fmt.Errorf("runner %s failed to start: %w", path, err)
}

// handshakeProblem says what is wrong with a runner's first stdout line for
// bridge, or "" if nothing is.
func handshakeProblem(line string) string {
	parts := strings.Split(line, "|")
	if len(parts) < 4 || (parts[2] != "unix" && parts[2] != "tcp") {
		if len(line) > 80 {
			line = line[:80]
		}
		return fmt.Sprintf("first line on stdout is not a go-plugin handshake (want 1|1|unix|/path.sock|grpc, got %q)", line)
	}
	if parts[0] != strconv.Itoa(plugin.CoreProtocolVersion) {
		return fmt.Sprintf("handshake speaks go-plugin core protocol %q; bridge speaks %d", parts[0], plugin.CoreProtocolVersion)
	}
	if v := strconv.Itoa(int(runners.Handshake.ProtocolVersion)); parts[1] != v {
		return fmt.Sprintf("handshake names runner protocol version %q; bridge speaks %s (PLUGIN_PROTOCOL_VERSIONS=%s)", parts[1], v, v)
	}
	proto := "netrpc" // go-plugin's default when the field is missing
	if len(parts) > 4 {
		proto = parts[4]
	}
	if proto != string(plugin.ProtocolGRPC) {
		return fmt.Sprintf("handshake names protocol %q; bridge runners speak grpc", proto)
	}
	return ""
}

// PID returns the runner's process id (0 before it started).
func (p *Process) PID() int {
	if p.run == nil {
		return 0
	}
	return p.run.pid
}

// Info is the runner's Describe answer at start-up.
func (p *Process) Info() *bridgev1.DescribeResponse { return p.info }

// RPC is the bridge.v1.Runner client on the runner's connection.
func (p *Process) RPC() bridgev1.RunnerClient { return p.rpc }

// Conn is the runner's gRPC connection, for the go-plugin services
// (health, stdio, controller) that bridge.v1.Runner does not cover.
func (p *Process) Conn() *grpc.ClientConn {
	if gc, ok := p.conn.(*plugin.GRPCClient); ok {
		return gc.Conn
	}
	return nil
}

// Handshake is the line the runner wrote first on stdout, with its
// newline if that has come, and whether it has.
func (p *Process) Handshake() (string, bool) { return p.stdout.Handshake() }

// StrayStdout returns the first bytes the runner wrote to stdout after its
// handshake line, and how many bytes that was in all.
func (p *Process) StrayStdout() ([]byte, int64) { return p.stdout.Stray() }

// Exited reports whether the runner process has ended.
func (p *Process) Exited() bool { return p.client.Exited() }

// Kill asks the runner to shut down (go-plugin calls its Shutdown RPC, waits
// two seconds, then kills it) and removes its socket directory. A wedged
// runner can block Kill: a watchdog kills the whole process group.
func (p *Process) Kill() {
	pid := p.PID()
	done := make(chan struct{})
	go func() {
		p.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		if pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		<-done
	}
	if pid > 0 {
		// Children the app started (same process group) go with it.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// dead reports whether the runner is gone: exited, or no longer answering
// its health check on a connection that has failed. A runner that is only
// busy answers (health is served outside the app's slots).
func (p *Process) dead() bool {
	if p.client.Exited() {
		return true
	}
	res := make(chan error, 1)
	go func() { res <- p.conn.Ping() }()
	select {
	case err := <-res:
		return err != nil
	case <-time.After(2 * time.Second):
		return false
	}
}

// grpcBuffer sizes the gRPC connection's read and write buffers (default
// 32 KiB): a 1 MiB body then crosses in 4 syscalls each way instead of 32.
const grpcBuffer = 256 << 10

// mallocDefaults keeps glibc's allocator from giving request-sized memory
// back to the kernel after every request. By default a freed block of a
// few MiB (a 1 MiB POST body and its copies) shrinks the heap, and the next
// request faults it in again: the Python shim took 700+ page faults and
// 4-20 ms of CPU per 1 MiB echo, degrading over a run, against 1 fault and
// ~3.7 ms with these settings (bench/NOTES.md). Blocks under 4 MiB come from
// the heap, and up to 16 MiB of free heap stays mapped. Settings already in
// the environment win.
func mallocDefaults(env []string) []string {
	var out []string
	for _, kv := range []string{"MALLOC_MMAP_THRESHOLD_=4194304", "MALLOC_TRIM_THRESHOLD_=16777216"} {
		name := kv[:strings.IndexByte(kv, '=')+1]
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, name) }) {
			out = append(out, kv)
		}
	}
	return out
}
