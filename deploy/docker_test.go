package deploy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runtimeFamilies are the images of deploy/docker: per family, the runner
// spec its Dockerfile sets, the modules its runner needs (checked with the
// interpreter the image uses) and an app to serve with it.
var runtimeFamilies = []struct {
	name, spec string
	probe      []string // interpreter argv
	appFiles   []string // copied into the app directory (repo-relative)
	want       string   // in the body of GET /
}{
	{"python", "python:app:application", []string{"/usr/bin/python3", "-c", "import h2, google.protobuf"},
		[]string{"deploy/demo/app.py"}, "Hello from bridge!"},
	{"perl", "perl:app.psgi", []string{"/usr/bin/perl", "-MPlack::Util", "-MProtocol::HTTP2::Server", "-e1"},
		[]string{"testdata/apps/nginx_deploy/app.psgi"}, "psgi /"},
	{"ruby", "ruby:config.ru", []string{"/usr/bin/ruby", "-e", "require 'protocol/http2/server'; require 'google/protobuf'; require 'rack'"},
		[]string{"testdata/apps/nginx_deploy/config.ru"}, "rack /"},
}

// TestInstallRuntimeScript runs deploy/docker/install-runtime.sh on this
// host for each family, as each Dockerfile does, twice (it must be
// idempotent), then proves the result: the bridge user and directories
// exist as the images expect; as that user, the family's interpreter loads
// its runner's modules; and bridge, run as that user with the images'
// config (deploy/docker/bridge.yaml) and the Dockerfile's BRIDGE_RUNNER,
// serves an app and reports ready on its admin address, which is what the
// image's HEALTHCHECK asks.
func TestInstallRuntimeScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: install-runtime.sh installs Debian packages and creates the bridge user (run the deploy tests as root, as CI does)")
	}
	bin := buildBridgeForDeployTests(t)
	for _, fam := range runtimeFamilies {
		t.Run(fam.name, func(t *testing.T) {
			for run := 1; run <= 2; run++ {
				out, err := exec.Command("sh", filepath.Join("docker", "install-runtime.sh"), fam.name).CombinedOutput()
				if err != nil {
					t.Fatalf("install-runtime.sh %s (run %d): %v\n%s", fam.name, run, err, out)
				}
				if run == 2 && strings.Contains(string(out), "installing") {
					t.Errorf("second run installed packages again:\n%s", out)
				}
			}
			u := bridgeUser(t)
			checkDir(t, "/run/bridge", u, 0o755)
			checkDir(t, "/var/lib/bridge/cache", u, 0o700)
			checkDir(t, "/etc/bridge", nil, 0o755)
			checkDir(t, "/srv/app", nil, 0o755)

			probe := exec.Command(fam.probe[0], fam.probe[1:]...)
			probe.SysProcAttr = asUser(u)
			probe.Dir = "/"
			if out, err := probe.CombinedOutput(); err != nil {
				t.Fatalf("as user bridge, %v: %v\n%s", fam.probe, err, out)
			}
			serveAsImage(t, bin, fam.spec, fam.appFiles, fam.want, u)
		})
	}
}

// bridgeUser looks up the user install-runtime.sh creates.
func bridgeUser(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Lookup("bridge")
	if err != nil {
		t.Fatalf("install-runtime.sh did not create the bridge user: %v", err)
	}
	if u.HomeDir != "/var/lib/bridge" {
		t.Errorf("bridge's home is %s, want /var/lib/bridge", u.HomeDir)
	}
	return u
}

// checkDir checks a directory's mode and owner (root when u is nil).
func checkDir(t *testing.T, path string, u *user.User, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil || !fi.IsDir() {
		t.Errorf("%s: not a directory (%v)", path, err)
		return
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
	want := "0"
	if u != nil {
		want = u.Uid
	}
	if got := fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid); got != want {
		t.Errorf("%s: owner uid %s, want %s", path, got, want)
	}
}

func asUser(u *user.User) *syscall.SysProcAttr {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// serveAsImage runs `bridge serve --config deploy/docker/bridge.yaml` as
// the bridge user with the environment the Dockerfiles set, changing only
// where it listens and the app directory (BRIDGE_* variables win over the
// file), and checks that the app answers and /readyz says ready.
func serveAsImage(t *testing.T, bin, spec string, appFiles []string, want string, u *user.User) {
	t.Helper()
	// A directory the bridge user can enter: the app, the binary, the
	// socket directory (bridge's own, as /run/bridge is).
	dir, err := os.MkdirTemp("", "deploy-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	app, run := filepath.Join(dir, "app"), filepath.Join(dir, "run")
	for _, d := range []string{dir, app, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(run, uid, gid); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bin, filepath.Join(dir, "bridge"), 0o755)
	for _, f := range appFiles {
		copyFile(t, filepath.Join("..", f), filepath.Join(app, filepath.Base(f)), 0o644)
	}
	httpAddr, adminAddr := freeLocalAddr(t), freeLocalAddr(t)
	config, err := filepath.Abs(filepath.Join("docker", "bridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The image's build step, as the serving user: the shims go into the
	// cache. Then the cache is made read-only for the run, as a read-only
	// root filesystem leaves it: serve must only verify them.
	shims := exec.Command(filepath.Join(dir, "bridge"), "shims")
	shims.SysProcAttr = asUser(u)
	shims.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var/lib/bridge", "BRIDGE_CACHE_DIR=/var/lib/bridge/cache"}
	if out, err := shims.CombinedOutput(); err != nil {
		t.Fatalf("bridge shims as %s: %v\n%s", u.Username, err, out)
	}
	if err := os.Chmod("/var/lib/bridge/cache", 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod("/var/lib/bridge/cache", 0o700)
	cmd := exec.Command(filepath.Join(dir, "bridge"), "serve", "--config", config)
	cmd.Dir = app
	cmd.SysProcAttr = asUser(u)
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var/lib/bridge",
		// As in the Dockerfiles:
		"BRIDGE_RUNNER=" + spec, "BRIDGE_CACHE_DIR=/var/lib/bridge/cache",
		// Where this test's bridge listens and finds the app:
		"BRIDGE_CHDIR=" + app, "BRIDGE_UWSGI=unix:" + filepath.Join(run, "uwsgi.sock"),
		"BRIDGE_HTTP=" + httpAddr, "BRIDGE_ADMIN=" + adminAddr, "BRIDGE_WORKERS=1", "BRIDGE_THREADS=1",
	}
	serveBridge(t, cmd, adminAddr, "/readyz 200 (what the image's HEALTHCHECK asks)")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
		t.Errorf("GET /: %d %q, want 200 with %q", resp.StatusCode, body, want)
	}
	if fi, err := os.Stat(filepath.Join(run, "uwsgi.sock")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("no uwsgi socket from the config's uwsgi listener: %v", err)
	}
	// The HEALTHCHECK itself (bridge healthcheck --config, as in the
	// Dockerfiles; BRIDGE_ADMIN wins over the file, as for serve).
	hc := exec.Command(bin, "healthcheck", "--config", config)
	hc.Env = cmd.Env
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("bridge healthcheck --config %s (BRIDGE_ADMIN=%s): %v\n%s", config, adminAddr, err, out)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// lockedLog collects a process's output from two pipes.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
