package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// target is one bridge under soak: a runner language, its app, its
// listeners and its process.
type target struct {
	name      string // python, perl, ruby
	spec      string // --runner
	dir       string // --chdir, absolute
	modifier1 int    // nginx uwsgi_modifier1 for the language

	sock      string // --uwsgi unix socket, behind nginx
	httpAddr  string // --http 127.0.0.1:PORT, for clients that go direct
	adminAddr string // --admin 127.0.0.1:PORT
	nginxAddr string // nginx's server for this bridge, 127.0.0.1:PORT

	proc *proc
	argv []string
}

// languages are the runners the soak knows, with their app under
// bench/soak/apps.
var languages = map[string]struct {
	spec      string
	modifier1 int
}{
	"python": {"python:soak:application", 0},
	"perl":   {"perl:soak.psgi", 5},
	"ruby":   {"ruby:soak.ru", 7},
}

// stack is everything the soak started: the bridges and one nginx, in a
// private temp dir (unix sockets, nginx's prefix).
type stack struct {
	tmp     string
	logDir  string
	targets []*target
	nginx   *proc
}

func (s *stack) procs() []*proc {
	var ps []*proc
	for _, t := range s.targets {
		if t.proc != nil {
			ps = append(ps, t.proc)
		}
	}
	if s.nginx != nil {
		ps = append(ps, s.nginx)
	}
	return ps
}

// startStack starts a bridge per runner and nginx in front of them, and
// waits until every front answers GET /hello.
func startStack(ctx context.Context, o *options, logDir string) (*stack, error) {
	tmp, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return nil, err
	}
	s := &stack{tmp: tmp, logDir: logDir}
	for _, name := range o.runners {
		lang, ok := languages[name]
		if !ok {
			return s, fmt.Errorf("unknown runner %q (python, perl, ruby)", name)
		}
		t := &target{name: name, spec: lang.spec, modifier1: lang.modifier1,
			dir: filepath.Join(o.appsDir, name), sock: filepath.Join(tmp, name+".sock")}
		for _, a := range []*string{&t.httpAddr, &t.adminAddr, &t.nginxAddr} {
			port, err := freePort()
			if err != nil {
				return s, err
			}
			*a = fmt.Sprintf("127.0.0.1:%d", port)
		}
		t.argv = append([]string{o.bridge, "serve", "--runner", t.spec, "--chdir", t.dir,
			"--uwsgi", "unix:" + t.sock, "--http", t.httpAddr, "--admin", t.adminAddr,
			"--workers", fmt.Sprint(o.workers), "--grace", o.grace.String(),
			"--log-level", o.logLevel}, o.bridgeArgs...)
		t.proc, err = startProc("bridge-"+name, t.argv, tmp, filepath.Join(logDir, "bridge-"+name+".log"))
		if err != nil {
			return s, err
		}
		s.targets = append(s.targets, t)
	}
	conf, err := writeNginxConf(tmp, logDir, s.targets)
	if err != nil {
		return s, err
	}
	s.nginx, err = startProc("nginx", []string{o.nginx, "-p", tmp, "-c", conf,
		"-e", filepath.Join(logDir, "nginx-error.log")}, tmp, filepath.Join(logDir, "nginx.out"))
	if err != nil {
		return s, err
	}
	return s, s.waitReady(ctx, o.startTimeout)
}

// waitReady polls each bridge's /readyz and GET /hello on both its fronts
// until all answer 200, a process exits, or timeout passes.
func (s *stack) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, t := range s.targets {
		urls := []string{"http://" + t.adminAddr + "/readyz", "http://" + t.httpAddr + "/hello",
			"http://" + t.nginxAddr + "/hello"}
		for _, u := range urls {
			for {
				for _, p := range s.procs() {
					if !p.alive() {
						return fmt.Errorf("%s exited at start (%v):\n%s", p.name, p.err, tailFile(p.log.Name(), 20))
					}
				}
				last := ""
				resp, err := cl.Get(u)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
					last = resp.Status
				} else {
					last = err.Error()
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s not ready after %s: %s", u, timeout, last)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// stop ends nginx, then each bridge (SIGTERM: a drain of up to --grace),
// then any runner or nginx worker still alive, all by pid. It returns one
// line per process that needed more than its signal.
func (s *stack) stop(grace time.Duration) []string {
	var notes []string
	if s.nginx != nil {
		workers := children(s.nginx.pid())
		if s.nginx.stop(syscall.SIGTERM, 10*time.Second) {
			notes = append(notes, "nginx: SIGKILL after 10s")
		}
		if n := killLeftovers(workers, 3*time.Second); n > 0 {
			notes = append(notes, fmt.Sprintf("nginx: %d worker(s) still running 3s after the master exited, killed", n))
		}
	}
	type left struct {
		t    *target
		kids []pidInfo
	}
	var all []left
	for _, t := range s.targets { // SIGTERM all at once: they drain in parallel
		if t.proc != nil && t.proc.alive() {
			all = append(all, left{t, children(t.proc.pid())})
			_ = t.proc.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, l := range all {
		if l.t.proc.waitOrKill(grace + 15*time.Second) { // a second SIGTERM would stop it at once
			notes = append(notes, fmt.Sprintf("bridge-%s: SIGKILL after %s", l.t.name, grace+15*time.Second))
		}
		if n := killLeftovers(l.kids, 3*time.Second); n > 0 {
			notes = append(notes, fmt.Sprintf("bridge-%s: %d runner(s) still running 3s after it exited, killed", l.t.name, n))
		}
	}
	return notes
}

// kill SIGKILLs every process of the stack and their children at once
// (the second Ctrl-C).
func (s *stack) kill() {
	var kids []pidInfo
	for _, p := range s.procs() {
		if p.alive() {
			kids = append(kids, children(p.pid())...)
			_ = p.cmd.Process.Kill()
		}
	}
	killLeftovers(kids, 0)
}

// removeTemp removes the private temp dir (sockets, nginx's prefix).
func (s *stack) removeTemp() { _ = os.RemoveAll(s.tmp) }

// writeNginxConf writes one nginx (master and two workers) with a server
// per bridge that passes everything over uwsgi to its unix socket.
func writeNginxConf(tmp, logDir string, targets []*target) (string, error) {
	var b strings.Builder
	if os.Geteuid() == 0 {
		b.WriteString("user root;  # workers must reach the sockets in a private temp dir\n")
	}
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 16384;
pid %[1]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    uwsgi_temp_path %[1]s/uwsgi;
    fastcgi_temp_path %[1]s/fastcgi;
    scgi_temp_path %[1]s/scgi;
    client_max_body_size 16m;
    client_body_buffer_size 4m;   # uploads (up to 2 MiB) stay in memory
    # bridge's own --timeout (60s) decides, not nginx
    uwsgi_read_timeout 120s;
    uwsgi_send_timeout 120s;
`, tmp, logDir)
	for _, t := range targets {
		fmt.Fprintf(&b, `    server {
        listen %s;
        server_name soak-%s;
        location / {
            include /etc/nginx/uwsgi_params;
            uwsgi_modifier1 %d;
            uwsgi_pass unix:%s;
        }
    }
`, t.nginxAddr, t.name, t.modifier1, t.sock)
	}
	b.WriteString("}\n")
	path := filepath.Join(tmp, "nginx.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(logDir, "nginx.conf"), []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// nginxPath finds Debian's nginx.
func nginxPath() string {
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	return ""
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
