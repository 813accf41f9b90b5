package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"

	"github.com/hashicorp/go-plugin/runner"
)

// procRunner starts a runner process for go-plugin, as go-plugin's own
// command runner does, with one difference: it keeps what the process
// writes to stdout. The contract allows exactly one line there, the
// handshake; anything after it is an app printing to the plugin pipe, which
// go-plugin would silently drop. bridge logs it and `bridge conform` fails
// the runner for it.
type procRunner struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
	out    *stdoutRecord
	pid    int

	mu    sync.Mutex
	state *os.ProcessState // once it has exited
}

var _ runner.Runner = (*procRunner)(nil)

// newProcRunner prepares cmd (not started) with pipes for stdout and stderr.
func newProcRunner(cmd *exec.Cmd, out *stdoutRecord) (*procRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &procRunner{cmd: cmd, stdout: stdout, stderr: stderr, out: out}, nil
}

func (r *procRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.pid = r.cmd.Process.Pid
	return nil
}

func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.mu.Lock()
	r.state = r.cmd.ProcessState
	r.mu.Unlock()
	return err
}

// exitStatus says how the process ended ("exited with status 1", "was
// killed by signal killed"), or "" while it runs.
func (r *procRunner) exitStatus() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return ""
	}
	switch ws, ok := r.state.Sys().(syscall.WaitStatus); {
	case ok && ws.Signaled():
		return fmt.Sprintf("was killed by signal %v", ws.Signal())
	default:
		return fmt.Sprintf("exited with status %d", r.state.ExitCode())
	}
}

func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *procRunner) Stdout() io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(r.stdout, r.out), r.stdout}
}

func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.cmd.Path }

func (r *procRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("the runner %s must print its handshake line (1|1|unix|/path/to.sock|grpc) first on stdout", r.cmd.Path)
}

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// stdoutRecord keeps a runner's stdout: the handshake line, and up to
// maxStray bytes of anything written after it.
type stdoutRecord struct {
	mu        sync.Mutex
	handshake []byte // up to and with its newline, once that has come
	stray     []byte
	strayN    int64
	onStray   func([]byte) // called once, with the first stray bytes
}

// complete reports whether the handshake line has its newline; s.mu held.
func (s *stdoutRecord) complete() bool {
	return len(s.handshake) > 0 && s.handshake[len(s.handshake)-1] == '\n'
}

const maxStray = 4 << 10

func (s *stdoutRecord) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	if !s.complete() {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.handshake = append(s.handshake, p...)
			return n, nil
		}
		s.handshake = append(s.handshake, p[:i+1]...)
		p = p[i+1:]
	}
	if len(p) == 0 {
		return n, nil
	}
	first := s.strayN == 0
	s.strayN += int64(len(p))
	if room := maxStray - len(s.stray); room > 0 {
		s.stray = append(s.stray, p[:min(room, len(p))]...)
	}
	if first && s.onStray != nil {
		s.onStray(bytes.Clone(s.stray))
	}
	return n, nil
}

// Handshake is the first line the runner wrote on stdout, with its newline
// if that has come, and whether it has.
func (s *stdoutRecord) Handshake() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.handshake), s.complete()
}

// Stray returns the first bytes written after the handshake line and how
// many there were in all.
func (s *stdoutRecord) Stray() ([]byte, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.stray), s.strayN
}
