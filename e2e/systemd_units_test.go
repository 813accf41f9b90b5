package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The unit files users copy (deploy/systemd): checked key by key, by
// systemd-analyze verify, and run: bridge.socket's socket and
// bridge.service's ExecStart, Environment, ExecReload and KillSignal, with
// deploy/bridge.yaml as its config, exactly as written but for the paths a
// test may not use (/usr/local/bin/bridge, /etc/bridge, /run, /var/cache).

// unit is a parsed unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func (u unit) get(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, "\\") && sc.Scan() {
			n++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(sc.Text())
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func systemdUnits(t *testing.T) (svc, sock unit) {
	dir := filepath.Join(repoRoot, "deploy", "systemd")
	return parseUnit(t, filepath.Join(dir, "bridge.service")), parseUnit(t, filepath.Join(dir, "bridge.socket"))
}

// serveFlags are the flags `bridge serve -h` lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	_, help, _ := runBridge(t, "serve", "-h")
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help, -1) {
		flags[m[1]] = true
	}
	if !flags["uwsgi"] || !flags["grace"] {
		t.Fatalf("could not read the flags of bridge serve -h:\n%s", help)
	}
	return flags
}

// execArgs is ExecStart's argv, and its flags as name -> value.
func execArgs(t *testing.T, line string, known map[string]bool) ([]string, map[string]string) {
	t.Helper()
	argv := strings.Fields(line)
	flags := map[string]string{}
	for i := 2; i < len(argv); i++ {
		name, ok := strings.CutPrefix(argv[i], "--")
		if !ok {
			t.Fatalf("ExecStart argument %q is not a --flag", argv[i])
		}
		if !known[name] {
			t.Errorf("ExecStart flag --%s is not a flag of bridge serve", name)
		}
		if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "--") {
			flags[name] = argv[i+1]
			i++
		} else {
			flags[name] = "true"
		}
	}
	return argv, flags
}

func TestSystemdUnitFiles(t *testing.T) {
	svc, sock := systemdUnits(t)
	want := func(u unit, file, section, key, value string) {
		t.Helper()
		if got, ok := u.get(section, key); !ok || got != value {
			t.Errorf("%s [%s] %s=%q, want %q", file, section, key, got, value)
		}
	}
	for k, v := range map[string]string{
		"Type": "notify", "ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM", "KillMode": "mixed",
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallFilter": "@system-service", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"RestrictSUIDSGID": "yes", "LockPersonality": "yes", "UMask": "0077",
	} {
		want(svc, "bridge.service", "Service", k, v)
	}
	want(svc, "bridge.service", "Unit", "Requires", "bridge.socket")
	for k, v := range map[string]string{
		"ListenStream": "/run/bridge/app.sock", "SocketMode": "0660", "SocketGroup": "www-data",
		"Accept": "no", "FileDescriptorName": "uwsgi", "Service": "bridge.service",
	} {
		want(sock, "bridge.socket", "Socket", k, v)
	}

	start, _ := svc.get("Service", "ExecStart")
	argv, flags := execArgs(t, start, serveFlags(t))
	if argv[0] != "/usr/local/bin/bridge" || argv[1] != "serve" {
		t.Errorf("ExecStart=%q, want /usr/local/bin/bridge serve ...", start)
	}
	name, _ := sock.get("Socket", "FileDescriptorName")
	if flags["uwsgi"] != "fd:"+name {
		t.Errorf("ExecStart --uwsgi %q, want fd:%s (bridge.socket's FileDescriptorName)", flags["uwsgi"], name)
	}
	// systemd's stop timeout must outlast bridge's own drain.
	grace, err := time.ParseDuration(flags["grace"])
	if err != nil {
		t.Fatalf("ExecStart --grace %q: %v", flags["grace"], err)
	}
	stopAfter := unitDuration(t, svc, "TimeoutStopSec")
	if stopAfter <= grace {
		t.Errorf("TimeoutStopSec %v must exceed --grace %v: systemd would SIGKILL requests bridge is still finishing", stopAfter, grace)
	}
	if startAfter := unitDuration(t, svc, "TimeoutStartSec"); startAfter <= 60*time.Second {
		t.Errorf("TimeoutStartSec %v must exceed bridge's --start-timeout (60s), so bridge reports a slow app itself", startAfter)
	}
	// The shim cache is the one writable place, and it is CacheDirectory.
	cache, _ := svc.get("Service", "CacheDirectory")
	if env := svc["Service"]["Environment"]; len(env) != 1 || env[0] != "BRIDGE_CACHE_DIR=/var/cache/"+cache {
		t.Errorf("Environment=%q, want BRIDGE_CACHE_DIR=/var/cache/%s", env, cache)
	}
	// An exec directory holding the socket would be chowned to the service
	// user (taking it from SocketGroup) and removed at each stop.
	listen, _ := sock.get("Socket", "ListenStream")
	for _, d := range svc["Service"]["RuntimeDirectory"] {
		if strings.HasPrefix(listen, "/run/"+d+"/") {
			t.Errorf("RuntimeDirectory=%s holds bridge.socket's %s", d, listen)
		}
	}
}

func unitDuration(t *testing.T, u unit, key string) time.Duration {
	t.Helper()
	v, _ := u.get("Service", key)
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: want seconds, or a duration such as 45s", key, v)
	}
	return d
}

// systemd-analyze verify: unknown keys, bad values, missing binaries. It
// only warns (exit 0) about an unknown key, so any output fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: run `make deps` (Debian package systemd)")
	}
	dir := t.TempDir()
	for _, name := range []string{"bridge.service", "bridge.socket"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that ExecStart's binary exists: use this run's.
		data = []byte(strings.ReplaceAll(string(data), "/usr/local/bin/bridge", bridgeBin))
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "bridge.socket", "bridge.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify bridge.socket bridge.service: %v\n%s", err, out)
	}
}

// The units, run: the socket as bridge.socket makes it, bridge as
// bridge.service's ExecStart and Environment start it, with
// deploy/bridge.yaml as /etc/bridge/app.yaml; then `bridge healthcheck` on
// the same config, ExecReload, and KillSignal.
func TestSystemdUnitsRun(t *testing.T) {
	svc, sock := systemdUnits(t)
	tmp := shortTempDir(t)

	// bridge.socket, as systemd makes it.
	listen, _ := sock.get("Socket", "ListenStream")
	sockPath := filepath.Join(tmp, filepath.Base(listen))
	name, _ := sock.get("Socket", "FileDescriptorName")
	uw := newSDSocket(t, name, "unix", sockPath)
	modeText, _ := sock.get("Socket", "SocketMode")
	mode, _ := strconv.ParseUint(modeText, 8, 32)
	if err := os.Chmod(sockPath, os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
	if group, _ := sock.get("Socket", "SocketGroup"); os.Geteuid() == 0 {
		g, err := user.LookupGroup(group)
		if err != nil {
			t.Fatalf("SocketGroup=%s: %v (Debian has it: base-passwd)", group, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(sockPath, -1, gid); err != nil {
			t.Fatal(err)
		}
	}

	// /etc/bridge/app.yaml: deploy/bridge.yaml with the app's directory
	// and a free admin port.
	appDir := writeActivationApp(t)
	adminAddr := freeAddr(t)
	yaml, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "bridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(yaml)
	for old, repl := range map[string]string{"\nchdir: /srv/app\n": "\nchdir: " + appDir + "\n", "\nadmin: 127.0.0.1:9100": "\nadmin: " + adminAddr} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("deploy/bridge.yaml no longer has %q: update this test", strings.TrimSpace(old))
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	cfgPath := filepath.Join(tmp, "app.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	start, _ := svc.get("Service", "ExecStart")
	args := strings.Fields(strings.ReplaceAll(start, "/etc/bridge/app.yaml", cfgPath))[1:]
	var env []string
	for _, e := range svc["Service"]["Environment"] {
		env = append(env, strings.ReplaceAll(e, "/var/cache/", filepath.Join(tmp, "cache")+"/"))
	}
	env = append(env, "APP_TAG=unit", "PYTHONDONTWRITEBYTECODE=1")
	notify := newNotifyListener(t)
	b := startActivated(t, activation{sockets: []*sdSocket{uw}, args: args, env: env, notifySrv: notify.path}, true)
	notify.wait(t, "READY=1")

	if status, body, err := uwsgiGet(sockPath, "/"); err != nil || status != "HTTP/1.1 200 OK" || body != "unit" {
		t.Fatalf("uwsgi on bridge.socket's socket: %q %q %v", status, body, err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "cache", "bridge")); err != nil {
		t.Errorf("the shims were not unpacked in BRIDGE_CACHE_DIR: %v", err)
	}
	// The images' HEALTHCHECK, on the same config file.
	if out, errOut, err := runBridge(t, "healthcheck", "--config", cfgPath); err != nil || out != "ready\n" {
		t.Fatalf("bridge healthcheck --config: %v, %q %q", err, out, errOut)
	}

	// ExecReload, with $MAINPID as systemd sets it.
	reload, _ := svc.get("Service", "ExecReload")
	cmd := exec.Command("/bin/sh", "-c", reload)
	cmd.Env = append(os.Environ(), fmt.Sprintf("MAINPID=%d", b.cmd.Process.Pid))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %q: %v %s", reload, err, out)
	}
	if _, ok := b.log.waitRecord(startTimeout, func(r logRecord) bool {
		return strings.HasPrefix(r.str("message"), "reload: new generation serving")
	}); !ok {
		t.Fatalf("ExecReload did not reload:\n%s", b.log.tail(20))
	}
	if status, _, err := uwsgiGet(sockPath, "/"); err != nil || status != "HTTP/1.1 200 OK" {
		t.Fatalf("after the reload: %q %v", status, err)
	}

	// KillSignal, then bridge must be gone well within TimeoutStopSec.
	sig, _ := svc.get("Service", "KillSignal")
	if sig != "SIGTERM" {
		t.Fatalf("KillSignal=%s: this test sends SIGTERM", sig)
	}
	b.terminate(t)
	notify.wait(t, "STOPPING=1")
	if fi, err := os.Stat(sockPath); err != nil || uint64(fi.Mode().Perm()) != mode {
		t.Fatalf("after bridge stopped, bridge.socket's file: %v %v, want it kept with SocketMode=%s", fi, err, modeText)
	}
	if c, err := net.DialTimeout("unix", sockPath, 5*time.Second); err != nil {
		t.Fatalf("after bridge stopped, connecting to the socket: %v (want it queued for the next start)", err)
	} else {
		c.Close()
	}
}
