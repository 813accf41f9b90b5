package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Socket activation as systemd does it (issue 15, item 6): the test plays
// systemd. It opens the listening sockets, keeps its own copy, and starts
// bridge with them as fds 3, 4, ... and LISTEN_FDS, LISTEN_FDNAMES and
// LISTEN_PID set; LISTEN_PID must be bridge's own pid, which a shell that
// execs bridge keeps (systemd sets it in the forked child before exec).

// activationApp answers with $APP_TAG, and on /inherited with what a
// runner was handed: the activation variables and its open fds.
const activationApp = `import json
import os


def application(environ, start_response):
    if environ["PATH_INFO"] == "/inherited":
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[fd] = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                pass
        names = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
        env = {k: os.environ[k] for k in names if k in os.environ}
        body = json.dumps({"env": env, "fds": fds}).encode()
    else:
        body = os.environ.get("APP_TAG", "").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// sdSocket is a listening socket the test (as systemd) made and keeps.
type sdSocket struct {
	name string // FileDescriptorName=
	ln   net.Listener
	file *os.File // what is passed; a dup of ln's fd
}

func newSDSocket(t *testing.T, name, network, addr string) *sdSocket {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &sdSocket{name: name, ln: ln, file: f}
}

// inode is the socket's inode, as /proc/PID/fd shows it: "socket:[N]".
func (s *sdSocket) inode(t *testing.T) string {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(s.file.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("socket:[%d]", st.Ino)
}

// activation says how to start an activated bridge.
type activation struct {
	sockets   []*sdSocket
	args      []string // bridge serve's arguments
	env       []string
	otherPID  bool // LISTEN_PID names another process (the shell is not exec'ing)
	notifySrv string
}

// startActivated starts `bridge ARGS` the way systemd starts a
// socket-activated service, and waits for "bridge ready" unless wait is
// false. It is stopped (SIGTERM, exit 0) when the test ends.
func startActivated(t *testing.T, a activation, wait bool) *bridgeProc {
	t.Helper()
	trackSources()
	b := &bridgeProc{log: &logBuffer{}, done: make(chan struct{})}
	var names []string
	var files []*os.File
	for _, s := range a.sockets {
		names = append(names, s.name)
		files = append(files, s.file)
	}
	// $$ is the shell's pid, which exec hands on to bridge.
	script := `LISTEN_PID=$$ exec "$0" "$@"`
	if a.otherPID {
		script = `LISTEN_PID=$PPID exec "$0" "$@"`
	}
	b.cmd = exec.Command("/bin/sh", append([]string{"-c", script, bridgeBin}, a.args...)...)
	b.cmd.Env = append(os.Environ(), a.env...)
	b.cmd.Env = append(b.cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	if a.notifySrv != "" {
		b.cmd.Env = append(b.cmd.Env, "NOTIFY_SOCKET="+a.notifySrv)
	}
	b.cmd.ExtraFiles = files // fds 3, 4, ...
	return b.launch(t, wait)
}

// exited waits for bridge to exit by itself and returns its log.
func (b *bridgeProc) exited(t *testing.T) (string, error) {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(startTimeout):
		t.Fatalf("bridge did not exit:\n%s", b.log.tail(40))
	}
	b.signalled = true
	return b.log.String(), b.waitErr
}

// terminate sends SIGTERM (systemd's KillSignal) and waits for exit 0.
func (b *bridgeProc) terminate(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := b.exited(t); err != nil {
		t.Fatalf("bridge exited with %v after SIGTERM, want 0:\n%s", err, b.log.tail(40))
	}
}

// notifyListener is systemd's NOTIFY_SOCKET: it collects datagrams.
type notifyListener struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(shortTempDir(t), "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifyListener) wait(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for {
		n.mu.Lock()
		got := append([]string(nil), n.msgs...)
		n.mu.Unlock()
		for _, m := range got {
			if m == msg {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd was not told %q; got %q", msg, got)
		}
		time.Sleep(pollEvery)
	}
}

// uwsgiGet sends one uwsgi request (as nginx does) and returns the status
// line and body; errors are returned, not fatal, for load goroutines.
func uwsgiGet(sock, path string) (string, string, error) {
	c, err := net.DialTimeout("unix", sock, 30*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	pkt := uwsgiPacket([][2]string{
		{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", path}, {"PATH_INFO", path}, {"QUERY_STRING", ""},
		{"SERVER_PROTOCOL", "HTTP/1.1"}, {"REMOTE_ADDR", "127.0.0.1"}, {"REMOTE_PORT", "40000"},
		{"SERVER_NAME", "127.0.0.1"}, {"SERVER_PORT", "80"}, {"HTTP_HOST", "127.0.0.1"},
	})
	if _, err := c.Write(pkt); err != nil {
		return "", "", err
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		return "", "", err
	}
	head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		return "", "", fmt.Errorf("no end of head in %q", resp)
	}
	status, _, _ := strings.Cut(string(head), "\r\n")
	return status, string(body), nil
}

func httpGet(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body), err
}

func writeActivationApp(t *testing.T) string {
	dir := t.TempDir()
	writeApp(t, dir, activationApp)
	return dir
}

// All three fronts on passed sockets, unix and TCP: served, systemd told
// READY=1 and STOPPING=1, the unix socket keeps systemd's mode (not
// --socket-mode) and its file after bridge exits, the runners inherit
// neither the sockets nor the variables, and a passed socket nobody uses
// is named in a warning.
func TestSystemdActivation(t *testing.T) {
	dir := writeActivationApp(t)
	sockPath := filepath.Join(shortTempDir(t), "app.sock")
	uw := newSDSocket(t, "uwsgi", "unix", sockPath)
	if err := os.Chmod(sockPath, 0o640); err != nil { // systemd's SocketMode=
		t.Fatal(err)
	}
	web := newSDSocket(t, "http", "tcp", "127.0.0.1:0")
	adm := newSDSocket(t, "admin", "tcp", "127.0.0.1:0")
	spare := newSDSocket(t, "spare", "tcp", "127.0.0.1:0")
	notify := newNotifyListener(t)
	b := startActivated(t, activation{
		sockets: []*sdSocket{uw, web, adm, spare},
		args: []string{"serve", "--runner", "python:app:application", "--chdir", dir, "--workers", "1",
			"--uwsgi", "fd:uwsgi", "--http", "fd:http", "--admin", "fd:admin", "--socket-mode", "0600"},
		env:       []string{"APP_TAG=activated", "PYTHONDONTWRITEBYTECODE=1"},
		notifySrv: notify.path,
	}, true)
	notify.wait(t, "READY=1")

	if status, body, err := uwsgiGet(sockPath, "/"); err != nil || status != "HTTP/1.1 200 OK" || body != "activated" {
		t.Fatalf("uwsgi on the passed unix socket: %q %q %v", status, body, err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if code, body, err := httpGet(client, "http://"+web.ln.Addr().String()+"/"); err != nil || code != 200 || body != "activated" {
		t.Fatalf("HTTP on the passed TCP socket: %d %q %v", code, body, err)
	}
	if code, body, err := httpGet(client, "http://"+adm.ln.Addr().String()+"/readyz"); err != nil || code != 200 {
		t.Fatalf("admin /readyz on the passed socket: %d %q %v", code, body, err)
	}
	if fi, err := os.Stat(sockPath); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("passed unix socket: %v %v, want systemd's mode 0640 kept (not --socket-mode 0600)", fi.Mode(), err)
	}
	if _, ok := b.log.waitRecord(time.Second, func(r logRecord) bool {
		return r.str("level") == "warn" && strings.Contains(r.raw, "spare (fd 6)") && strings.Contains(r.raw, "no listener uses")
	}); !ok {
		t.Errorf("no warning about the unused socket spare (fd 6):\n%s", b.log.tail(20))
	}

	// What a runner inherited: no activation variables, no passed socket.
	_, body, err := uwsgiGet(sockPath, "/inherited")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Env map[string]string `json:"env"`
		FDs map[string]string `json:"fds"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/inherited: %v: %q", err, body)
	}
	if len(got.Env) != 0 {
		t.Errorf("the runner inherited %v: bridge must unset them (sd_listen_fds' unset_environment)", got.Env)
	}
	for _, s := range []*sdSocket{uw, web, adm, spare} {
		for fd, target := range got.FDs {
			if target == s.inode(t) {
				t.Errorf("the runner holds passed socket %s as its fd %s: bridge must make passed fds close-on-exec", s.name, fd)
			}
		}
	}

	b.terminate(t)
	notify.wait(t, "STOPPING=1")
	// bridge is gone; systemd's socket file and listener are not.
	if fi, err := os.Stat(sockPath); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after bridge exited, the socket file: %v %v; want it left as systemd made it", fi, err)
	}
	c, err := net.DialTimeout("unix", sockPath, 5*time.Second)
	if err != nil {
		t.Fatalf("after bridge exited, connecting to systemd's socket: %v (want it queued in the backlog)", err)
	}
	c.Close()
}

// sd_listen_fds ignores sockets whose LISTEN_PID is another process; a
// listener that wanted one then fails, saying why. A name that was not
// passed fails listing the names that were.
func TestSystemdActivationErrors(t *testing.T) {
	dir := writeActivationApp(t)
	uw := newSDSocket(t, "uwsgi", "unix", filepath.Join(shortTempDir(t), "app.sock"))
	base := []string{"serve", "--runner", "python:app:application", "--chdir", dir, "--workers", "1"}

	b := startActivated(t, activation{sockets: []*sdSocket{uw}, otherPID: true,
		args: append(base, "--uwsgi", "fd:uwsgi")}, false)
	log, err := b.exited(t)
	if err == nil || !strings.Contains(log, "LISTEN_PID") || !strings.Contains(log, "not bridge") || !strings.Contains(log, "ignored") {
		t.Fatalf("LISTEN_PID of another process: exit %v, log:\n%s\nwant a failure saying the sockets are for another process", err, log)
	}

	b = startActivated(t, activation{sockets: []*sdSocket{uw},
		args: append(base, "--uwsgi", "fd:app")}, false)
	log, err = b.exited(t)
	if err == nil || !strings.Contains(log, `no socket named "app", only "uwsgi"`) || !strings.Contains(log, "FileDescriptorName=app") {
		t.Fatalf("fd:app when only uwsgi was passed: exit %v, log:\n%s", err, log)
	}
}

// A restart under load, as "systemctl restart bridge" does it: SIGTERM,
// bridge drains and exits, a new bridge starts on the same sockets. The
// sockets stay open in systemd (here: the test), so connections made in
// between wait in the kernel's backlog: no client, nginx included, sees a
// refused connection or a failed request.
func TestSystemdRestartUnderLoad(t *testing.T) {
	dir := writeActivationApp(t)
	sockPath := filepath.Join(shortTempDir(t), "app.sock")
	uw := newSDSocket(t, "uwsgi", "unix", sockPath)
	web := newSDSocket(t, "http", "tcp", "127.0.0.1:0")
	ngx := startNginx(t, nginxUpstreams{uwsgiSock: sockPath})
	start := func(tag string) *bridgeProc {
		return startActivated(t, activation{sockets: []*sdSocket{uw, web},
			args: []string{"serve", "--runner", "python:app:application", "--chdir", dir, "--workers", "2", "--threads", "2",
				"--uwsgi", "fd:uwsgi", "--http", "fd:http", "--grace", "10s"},
			env: []string{"APP_TAG=" + tag, "PYTHONDONTWRITEBYTECODE=1"}}, true)
	}
	first := start("first")
	t0 := time.Now()

	var ok, failed atomic.Int64
	// Requests begun before the second bridge was ready and answered by
	// it waited in the backlog across the restart.
	var secondUp atomic.Bool
	var waited atomic.Int64
	var served sync.Map // tag -> count
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Each request on a new connection: every one goes through accept.
	direct := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	viaNginx := &http.Client{Timeout: 30 * time.Second}
	targets := []func() (string, error){
		func() (string, error) { // nginx -> uwsgi_pass unix:app.sock
			code, body, err := httpGet(viaNginx, "http://"+ngx.uwsgiUnix+"/")
			if err == nil && code != 200 {
				err = fmt.Errorf("via nginx: %d %q", code, body)
			}
			return body, err
		},
		func() (string, error) { // bridge's HTTP front on the passed TCP socket
			code, body, err := httpGet(direct, "http://"+web.ln.Addr().String()+"/")
			if err == nil && code != 200 {
				err = fmt.Errorf("http: %d %q", code, body)
			}
			return body, err
		},
		func() (string, error) { // a raw uwsgi client on the unix socket
			status, body, err := uwsgiGet(sockPath, "/")
			if err == nil && status != "HTTP/1.1 200 OK" {
				err = fmt.Errorf("uwsgi: %q %q", status, body)
			}
			return body, err
		},
	}
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100000; n++ { // bounded; stop ends it
				select {
				case <-stop:
					return
				default:
				}
				early := !secondUp.Load()
				body, err := targets[i%len(targets)]()
				if early && body == "second" {
					waited.Add(1)
				}
				if err != nil {
					fail(fmt.Errorf("client %d (%d %% 3), at %v after start: %w", i, i%3, time.Since(t0), err))
					continue
				}
				ok.Add(1)
				v, _ := served.LoadOrStore(body, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	count := func(tag string) int64 {
		if v, ok := served.Load(tag); ok {
			return v.(*atomic.Int64).Load()
		}
		return 0
	}
	waitServed := func(tag string, n int64) {
		deadline := time.Now().Add(startTimeout)
		for count(tag) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s served %d requests, want %d (ok %d, failed %d: %v)", tag, count(tag), n, ok.Load(), failed.Load(), firstErr.Load())
			}
			time.Sleep(pollEvery)
		}
	}
	waitServed("first", 300)

	// systemctl restart: stop (SIGTERM, wait for exit), then start.
	began := time.Now()
	t.Logf("SIGTERM at %v", began.Sub(t0))
	first.terminate(t)
	down := time.Now()
	second := start("second")
	secondUp.Store(true)
	gapLen := time.Since(down)
	waitServed("second", 300)
	close(stop)
	wg.Wait()
	second.terminate(t)

	t.Logf("restart: SIGTERM to first exit %v, then %v until the new bridge was ready; %d requests ok (first %d, second %d), %d of them waited in the backlog across the restart, %d failed",
		down.Sub(began).Round(time.Millisecond), gapLen.Round(time.Millisecond), ok.Load(), count("first"), count("second"), waited.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed across the restart, want 0; first: %v\nfirst bridge:\n%s\nsecond bridge:\n%s", failed.Load(), firstErr.Load(), first.log.tail(30), second.log.tail(10))
	}
	if waited.Load() == 0 {
		t.Fatal("no request waited across the restart: it was not under load")
	}
	if log := ngx.errorLogText(); strings.Contains(log, "connect() to unix:") || strings.Contains(log, "upstream prematurely") {
		t.Fatalf("nginx saw a refused or broken upstream connection:\n%s", tailText(log, 10))
	}
}
