package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const uwsgiParams = "/etc/nginx/uwsgi_params"

// nginxProc is a private nginx: its own prefix, config and ports, one
// process (master_process off) stopped by its pid.
type nginxProc struct {
	cmd      *exec.Cmd
	prefix   string
	errorLog string
	done     chan struct{}
	waitErr  error

	uwsgiUnix string // server: deploy/nginx/bridge-uwsgi.conf (uwsgi_pass unix:SOCK, stock uwsgi_params)
	uwsgiTCP  string // server: uwsgi_pass over TCP, uwsgi_buffering off (fixture variant "stream")
	proxy     string // server: deploy/nginx/bridge-http.conf (proxy_pass, keepalive, buffering on)
	staticDir string // the deploy servers' /static/ root (empty unless a test writes to it)
}

// nginxUpstreams names what the nginx servers pass to; an empty one gets no
// server block.
type nginxUpstreams struct {
	uwsgiSock string // unix socket path
	uwsgiTCP  string // host:port
	http      string // host:port
}

// nginxPath finds nginx, or fails the test: nginx is a hard dependency of
// the e2e suite, never a reason to skip.
func nginxPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	t.Fatal("nginx not installed: run `make deps` (apt-get install nginx)")
	return ""
}

// startNginx starts one nginx with a server per upstream given. The
// uwsgi-over-unix and proxy_pass servers are the deploy files themselves
// (deploy/nginx/bridge-uwsgi.conf and bridge-http.conf, see deployServer);
// the uwsgi-over-TCP server is a test-only variant with uwsgi_buffering off,
// so that bridge's own streaming is checked with nothing holding chunks back
// (the "stream" variant of docs/conformance.md). nginx is stopped with
// SIGTERM when the test ends.
func startNginx(t *testing.T, up nginxUpstreams) *nginxProc {
	t.Helper()
	n := newNginx(t)
	var servers strings.Builder
	if up.uwsgiSock != "" {
		n.uwsgiUnix = freeAddr(t)
		servers.WriteString(deployServer(t, "bridge-uwsgi.conf", deployVars{
			listen: n.uwsgiUnix, uwsgiSock: up.uwsgiSock, staticDir: n.staticDir}))
	}
	if up.uwsgiTCP != "" {
		n.uwsgiTCP = freeAddr(t)
		servers.WriteString("    server {\n        listen " + n.uwsgiTCP + ";\n        server_name 127.0.0.1;\n" +
			"        location / {\n            include " + uwsgiParams + ";\n            uwsgi_pass " + up.uwsgiTCP + ";\n" +
			"            uwsgi_buffering off;\n        }\n    }\n")
	}
	if up.http != "" {
		n.proxy = freeAddr(t)
		servers.WriteString(deployServer(t, "bridge-http.conf", deployVars{
			listen: n.proxy, httpAddr: up.http, staticDir: n.staticDir}))
	}
	var addrs []string
	for _, a := range []string{n.uwsgiUnix, n.uwsgiTCP, n.proxy} {
		if a != "" {
			addrs = append(addrs, a)
		}
	}
	n.run(t, servers.String(), addrs)
	return n
}

// newNginx checks that nginx and Debian's uwsgi_params are installed and
// gives an nginx its own prefix directory; run starts it.
func newNginx(t *testing.T) *nginxProc {
	t.Helper()
	if _, err := os.Stat(uwsgiParams); err != nil {
		t.Fatalf("%s missing (%v): run `make deps` (apt-get install nginx)", uwsgiParams, err)
	}
	n := &nginxProc{prefix: shortTempDir(t), done: make(chan struct{})}
	n.errorLog = filepath.Join(n.prefix, "error.log")
	n.staticDir = filepath.Join(n.prefix, "static")
	if err := os.Mkdir(n.staticDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The deploy files say `include uwsgi_params;`, which nginx resolves
	// next to its nginx.conf: put Debian's file there, unchanged.
	params, err := os.ReadFile(uwsgiParams)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.prefix, "uwsgi_params"), params, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// run writes nginx.conf around the given server blocks, starts nginx in the
// foreground and waits until every address in addrs accepts connections.
func (n *nginxProc) run(t *testing.T, servers string, addrs []string) {
	t.Helper()
	bin := nginxPath(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;  # workers must reach sockets in private temp dirs\n"
	}
	p := n.prefix
	conf := user + `daemon off;
master_process off;
worker_processes 1;
pid ` + p + `/nginx.pid;
error_log ` + n.errorLog + ` info;
events {
    worker_connections 512;
}
http {
    access_log ` + p + `/access.log;
    default_type text/plain;
    client_body_temp_path ` + p + `/client_body;
    proxy_temp_path ` + p + `/proxy;
    uwsgi_temp_path ` + p + `/uwsgi;
    fastcgi_temp_path ` + p + `/fastcgi;
    scgi_temp_path ` + p + `/scgi;
    client_max_body_size 20m;
` + servers + "}\n"
	confPath := filepath.Join(p, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "-p", p, "-c", confPath, "-e", n.errorLog)
	out := &logBuffer{}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	go func() {
		n.waitErr = n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() { n.stop(t) })

	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range addrs {
		for {
			select {
			case <-n.done:
				t.Fatalf("nginx exited at start (%v): %s\n%s\nconfig:\n%s", n.waitErr, out, n.errorLogText(), conf)
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx not listening on %s: %v\n%s", addr, err, n.errorLogText())
			}
			time.Sleep(pollEvery)
		}
	}
}

func (n *nginxProc) errorLogText() string {
	b, _ := os.ReadFile(n.errorLog)
	return string(b)
}

// stop sends SIGTERM to nginx by its pid and waits (bounded) for it.
func (n *nginxProc) stop(t *testing.T) {
	select {
	case <-n.done:
		t.Errorf("nginx exited during the test (%v):\n%s", n.waitErr, n.errorLogText())
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
		t.Errorf("nginx did not stop within 5s of SIGTERM (killed)")
	}
	if t.Failed() {
		t.Logf("nginx error log:\n%s", tailText(n.errorLogText(), 60))
	}
}

func tailText(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
