package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 30 * time.Second // bridge loads the app (Flask imports take a while)
	stopTimeout  = 10 * time.Second // SIGTERM to exit
	pollEvery    = 20 * time.Millisecond
)

// logBuffer collects a process's stderr; tests read and grep it while the
// process runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logRecord is one JSON log line; raw is the line as written.
type logRecord struct {
	fields map[string]any
	raw    string
}

// str is a string field, or "".
func (r logRecord) str(name string) string {
	s, _ := r.fields[name].(string)
	return s
}

// runner is a string field of what the runner itself wrote (bridge keeps
// a runner's stderr line under "runner_log", apart from its own fields), or
// "".
func (r logRecord) runner(name string) string {
	own, _ := r.fields["runner_log"].(map[string]any)
	s, _ := own[name].(string)
	return s
}

// reqID is the request id of a record: bridge's own lines say req_id, the
// lines a shim wrote say request_id under runner_log.
func (r logRecord) reqID() string {
	if id := r.str("req_id"); id != "" {
		return id
	}
	return r.runner("request_id")
}

// records parses the JSON lines written so far; other lines are skipped.
func (b *logBuffer) records() []logRecord {
	var out []logRecord
	for _, line := range strings.Split(b.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, logRecord{fields: m, raw: line})
		}
	}
	return out
}

// forRequest is every record that carries request id id.
func (b *logBuffer) forRequest(id string) []logRecord {
	var out []logRecord
	for _, r := range b.records() {
		if r.reqID() == id {
			out = append(out, r)
		}
	}
	return out
}

// waitRecord polls until a record matches, for at most d.
func (b *logBuffer) waitRecord(d time.Duration, match func(logRecord) bool) (logRecord, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, r := range b.records() {
			if match(r) {
				return r, true
			}
		}
		if time.Now().After(deadline) {
			return logRecord{}, false
		}
		time.Sleep(pollEvery)
	}
}

// tail is the last n lines, for failure messages.
func (b *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// bridgeOpts says how to start bridge.
type bridgeOpts struct {
	app       string // directory under testdata/apps
	dir       string // or any directory (overrides app)
	spec      string // runner spec, e.g. python:app:application
	http      bool   // an HTTP listener on a free 127.0.0.1 port
	uwsgiUnix bool   // a uwsgi listener on a unix socket in a temp dir
	uwsgiTCP  bool   // a uwsgi listener on a free 127.0.0.1 port
	admin     bool   // an admin listener on a free 127.0.0.1 port
	workers   int
	threads   int
	env       []string // added to the environment
	args      []string // more serve flags
}

// bridgeProc is a running `bridge serve`.
type bridgeProc struct {
	cmd        *exec.Cmd
	log        *logBuffer
	httpAddr   string // host:port
	uwsgiSock  string // path
	uwsgiTCP   string // host:port
	adminAddr  string // host:port
	adminToken string // sent with adminPost, if set
	done       chan struct{}
	signalled  bool // the test stopped bridge itself
	waitErr    error
}

// startBridge starts `bridge serve`, waits until it is ready, and stops it
// (SIGTERM, expecting exit status 0) when the test ends.
func startBridge(t *testing.T, o bridgeOpts) *bridgeProc {
	t.Helper()
	trackSources()
	b := &bridgeProc{log: &logBuffer{}, done: make(chan struct{})}
	dir := appDir(o.app)
	if o.dir != "" {
		dir = o.dir
	}
	args := []string{"serve", "--runner", o.spec, "--chdir", dir,
		"--workers", fmt.Sprint(max(o.workers, 1)), "--threads", fmt.Sprint(max(o.threads, 1)),
		"--grace", "5s"}
	if o.http {
		b.httpAddr = freeAddr(t)
		args = append(args, "--http", b.httpAddr)
	}
	if o.uwsgiUnix {
		b.uwsgiSock = filepath.Join(shortTempDir(t), "bridge.sock")
		args = append(args, "--uwsgi", "unix:"+b.uwsgiSock)
	}
	if o.uwsgiTCP {
		b.uwsgiTCP = freeAddr(t)
		args = append(args, "--uwsgi", b.uwsgiTCP)
	}
	if o.admin {
		b.adminAddr = freeAddr(t)
		args = append(args, "--admin", b.adminAddr)
	}
	args = append(args, o.args...)
	b.cmd = exec.Command(bridgeBin, args...)
	b.cmd.Env = append(os.Environ(), o.env...)
	return b.launch(t, true)
}

// launch starts b.cmd with its output in b.log and stops it (SIGTERM, exit
// 0 in time) when the test ends. If wait, it returns once bridge has
// logged "bridge ready" and every listener b knows accepts a connection;
// a bridge that exits first fails the test with its log.
func (b *bridgeProc) launch(t *testing.T, wait bool) *bridgeProc {
	t.Helper()
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start bridge: %v", err)
	}
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() { b.stop(t) })
	if !wait {
		return b
	}
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(b.log.String(), `"message":"bridge ready"`) || !b.reachable() {
		select {
		case <-b.done:
			b.signalled = true // its exit is the failure reported here
			t.Fatalf("bridge exited before it was ready (%v):\n%s", b.waitErr, b.log.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge not ready after %v:\n%s", startTimeout, b.log.tail(40))
		}
		time.Sleep(pollEvery)
	}
	return b
}

// reachable reports whether every listener accepts a connection.
func (b *bridgeProc) reachable() bool {
	for _, a := range [][2]string{{"tcp", b.httpAddr}, {"unix", b.uwsgiSock}, {"tcp", b.uwsgiTCP}} {
		if a[1] == "" {
			continue
		}
		c, err := net.DialTimeout(a[0], a[1], time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// stop sends SIGTERM to bridge (by its pid) and checks it exits 0 in time.
func (b *bridgeProc) stop(t *testing.T) {
	if b.signalled {
		return
	}
	select {
	case <-b.done:
		t.Errorf("bridge exited during the test (%v):\n%s", b.waitErr, b.log.tail(40))
		return
	default:
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM bridge (pid %d): %v", b.cmd.Process.Pid, err)
	}
	select {
	case <-b.done:
		if b.waitErr != nil {
			t.Errorf("bridge exited with %v after SIGTERM, want status 0:\n%s", b.waitErr, b.log.tail(40))
		}
	case <-time.After(stopTimeout):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Errorf("bridge did not exit within %v of SIGTERM (killed):\n%s", stopTimeout, b.log.tail(40))
	}
	if t.Failed() {
		t.Logf("bridge log (last 80 lines):\n%s", b.log.tail(80))
	}
}

var (
	portsMu sync.Mutex
	ports   = map[string]bool{} // handed out in this run
)

// freeAddr returns a 127.0.0.1 address with a port that was free just now
// and that no other caller in this run got.
func freeAddr(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !ports[addr] {
			ports[addr] = true
			return addr
		}
	}
	t.Fatal("no new free port after 100 tries")
	return ""
}

// shortTempDir is a temp dir with a short path: unix socket paths are
// limited to 108 bytes and t.TempDir() embeds the test name.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
