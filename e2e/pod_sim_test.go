package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// simPod is one pod of deploy/k8s on this host: its volumes are
// directories, its containers processes, started and stopped in the
// kubelet's order with the kubelet's signals.
type simPod struct {
	name      string
	img       *podImage
	nginxAddr string            // the Service's target: nginx's listen address
	adminAddr string            // bridge's admin address (the probes)
	ports     map[string]string // templating.ports: see templatingFor
	volumes   map[string]string // volume name -> host directory
	bridge    *podProcess
	nginx     *podProcess
}

// podProcess is a container's main process.
type podProcess struct {
	name    string
	cmd     *exec.Cmd
	output  func() string
	done    chan struct{}
	waitErr error
}

func (p *podProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// templatingFor is how container c of pod sees this host: its volume mounts
// and the image's paths become host directories; nginx's listen port and
// bridge's admin address become free loopback ones; when the test does not
// run as root (and so cannot run bridge in the fsGroup), socket-group
// becomes the test's own group.
func (p *simPod) templatingFor(c *corev1.Container) templating {
	tp := templating{paths: map[string]string{}, ports: p.ports}
	for k, v := range p.img.paths {
		tp.paths[k] = v
	}
	for _, vm := range c.VolumeMounts {
		tp.paths[vm.MountPath] = p.volumes[vm.Name]
	}
	return tp
}

// startPod runs a pod as the kubelet does: volumes first (emptyDirs as the
// kubelet makes them with an fsGroup: group fsGroup, mode 2777), then the
// bridge sidecar, its startup probe until it passes, then nginx, then the
// readiness probes of both.
func startPod(t *testing.T, img *podImage, name string) *simPod {
	t.Helper()
	m := img.manifest
	p := &simPod{name: name, img: img, volumes: map[string]string{},
		nginxAddr: freeAddr(t), adminAddr: freeAddr(t)}
	b, n := m.container(t, "bridge"), m.container(t, "nginx")

	p.ports = map[string]string{
		fmt.Sprintf("listen %d;", containerPortNamed(t, n, "http")):  "listen " + p.nginxAddr + ";",
		fmt.Sprintf("0.0.0.0:%d", containerPortNamed(t, b, "admin")): p.adminAddr,
	}
	if !img.asRoot {
		p.ports[fmt.Sprintf("socket-group: \"%d\"", img.fsGroup)] = "socket-group: \"" + img.sockGrp + "\""
	}
	for _, v := range m.spec().Volumes {
		dir := shortTempDir(t)
		switch {
		case v.EmptyDir != nil:
			if img.asRoot {
				if err := os.Chown(dir, 0, int(img.fsGroup)); err != nil {
					t.Fatal(err)
				}
			}
			chmodOrFail(t, dir, 0o777|os.ModeSetgid)
		case v.ConfigMap != nil:
			chmodOrFail(t, dir, 0o755)
		default:
			t.Fatalf("volume %s: the simulation knows emptyDir and configMap volumes only", v.Name)
		}
		p.volumes[v.Name] = dir
	}
	// A ConfigMap file is written as the container that reads it sees it.
	for _, c := range []*corev1.Container{b, n} {
		tp := p.templatingFor(c)
		for _, vm := range c.VolumeMounts {
			for _, v := range m.spec().Volumes {
				if v.Name != vm.Name || v.ConfigMap == nil {
					continue
				}
				for key, text := range m.configMaps[v.ConfigMap.Name].Data {
					out := tp.apply(text)
					if err := os.WriteFile(filepath.Join(p.volumes[v.Name], key), []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	p.mustContain(t, b, p.adminAddr)
	p.mustContain(t, n, "listen "+p.nginxAddr+";")

	p.bridge = p.run(t, b)
	deadline := probeBudget(b.StartupProbe)
	p.waitProbe(t, "bridge startupProbe", deadline, func() bool { return probeHTTP(p.adminAddr, b.StartupProbe.HTTPGet.Path) })
	if img.asRoot {
		p.checkSharing(t, b)
	}
	if out := p.bridge.output(); strings.Contains(out, "shim cache not trusted") {
		t.Errorf("pod %s: bridge passed over the image's shim cache (BRIDGE_CACHE_DIR):\n%s", name, tailText(out, 10))
	}

	p.nginx = p.run(t, n)
	p.waitProbe(t, "nginx readinessProbe", time.Now().Add(10*time.Second), func() bool { return probeTCP(p.nginxAddr) })
	p.waitProbe(t, "bridge readinessProbe", time.Now().Add(10*time.Second), func() bool { return probeHTTP(p.adminAddr, b.ReadinessProbe.HTTPGet.Path) })
	if !probeHTTP(p.adminAddr, b.LivenessProbe.HTTPGet.Path) {
		t.Fatalf("pod %s: bridge livenessProbe %s fails", name, b.LivenessProbe.HTTPGet.Path)
	}
	return p
}

// checkSharing checks what the pod's security settings are for: bridge
// runs as its runAsUser with the fsGroup, and its socket belongs to the
// fsGroup with mode 0660, so that nginx's user may connect through it.
func (p *simPod) checkSharing(t *testing.T, b *corev1.Container) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.bridge.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	uid := fmt.Sprintf("\nUid:\t%d\t", *b.SecurityContext.RunAsUser)
	groups := regexp.MustCompile(`\nGroups:\t(.*)\n`).FindStringSubmatch(string(status))
	if !strings.Contains(string(status), uid) || groups == nil || !slices.Contains(strings.Fields(groups[1]), strconv.FormatInt(p.img.fsGroup, 10)) {
		t.Errorf("pod %s: bridge does not run as uid %d with group %d:\n%s", p.name, *b.SecurityContext.RunAsUser, p.img.fsGroup, status)
	}
	var sock string
	for _, vm := range b.VolumeMounts {
		entries, _ := os.ReadDir(p.volumes[vm.Name])
		for _, e := range entries {
			if e.Type()&os.ModeSocket != 0 {
				sock = filepath.Join(p.volumes[vm.Name], e.Name())
			}
		}
	}
	fi, err := os.Stat(sock)
	if sock == "" || err != nil {
		t.Fatalf("pod %s: no socket of bridge's on its volumes (%v)", p.name, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int64(st.Gid) != p.img.fsGroup || fi.Mode().Perm() != 0o660 {
		t.Errorf("pod %s: socket %s has group %d, mode %04o; want the fsGroup %d, 0660", p.name, sock, st.Gid, fi.Mode().Perm(), p.img.fsGroup)
	}
}

// mustContain fails if the config files c reads lack want after
// templating: the manifests changed and the templating no longer fits.
func (p *simPod) mustContain(t *testing.T, c *corev1.Container, want string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		entries, _ := os.ReadDir(p.volumes[vm.Name])
		for _, e := range entries {
			if data, err := os.ReadFile(filepath.Join(p.volumes[vm.Name], e.Name())); err == nil && strings.Contains(string(data), want) {
				return
			}
		}
	}
	t.Fatalf("pod %s: no config file of container %s contains %q after templating: see templatingFor", p.name, c.Name, want)
}

// probeBudget is when a probe that has not passed fails the container:
// periodSeconds x failureThreshold (the test polls faster than the period,
// to be quick; only the polling period differs from the kubelet's).
func probeBudget(pr *corev1.Probe) time.Time {
	return time.Now().Add(time.Duration(pr.PeriodSeconds*pr.FailureThreshold) * time.Second)
}

func (p *simPod) waitProbe(t *testing.T, what string, deadline time.Time, ok func() bool) {
	t.Helper()
	for !ok() {
		for _, proc := range []*podProcess{p.bridge, p.nginx} {
			if proc != nil && proc.exited() {
				t.Fatalf("pod %s: %s exited (%v) while waiting for %s:\n%s", p.name, proc.name, proc.waitErr, what, tailText(proc.output(), 40))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: %s did not pass in time", p.name, what)
		}
		time.Sleep(pollEvery)
	}
}

// env is container c's environment: PATH (the image's bridge first), HOME,
// TMPDIR if c has /tmp on a volume, and c's env from the manifest.
func (p *simPod) env(c *corev1.Container, tp templating) []string {
	env := []string{"PATH=" + p.img.binDir + ":" + containerPath, "HOME=/"}
	if dir, ok := tp.paths["/tmp"]; ok {
		env = append(env, "TMPDIR="+dir)
	}
	for _, e := range c.Env {
		env = append(env, e.Name+"="+tp.apply(e.Value))
	}
	return env
}

// command is argv (templated) as a process of container c.
func (p *simPod) command(t *testing.T, c *corev1.Container, argv []string) *exec.Cmd {
	t.Helper()
	tp := p.templatingFor(c)
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = tp.apply(a)
	}
	env := p.env(c, tp)
	bin := lookPathIn(args[0], p.img.binDir+":"+containerPath)
	if bin == "" {
		t.Fatalf("container %s: %s is not on its PATH", c.Name, args[0])
	}
	cmd := exec.Command(bin, args[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = p.img.credential(c)
	return cmd
}

func lookPathIn(name, path string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for _, dir := range filepath.SplitList(path) {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return filepath.Join(dir, name)
		}
	}
	return ""
}

// run starts container c's command. Its output goes to a file anyone may
// write, as a container's stdout: nginx reopens /dev/stdout for its access
// log as its own user.
func (p *simPod) run(t *testing.T, c *corev1.Container) *podProcess {
	t.Helper()
	cmd := p.command(t, c, append(append([]string{}, c.Command...), c.Args...))
	logPath := filepath.Join(shortTempDir(t), c.Name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	chmodOrFail(t, filepath.Dir(logPath), 0o755)
	chmodOrFail(t, logPath, 0o666)
	cmd.Stdout, cmd.Stderr = f, f
	proc := &podProcess{name: p.name + "/" + c.Name, cmd: cmd, done: make(chan struct{}),
		output: func() string { b, _ := os.ReadFile(logPath); return string(b) }}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", proc.name, err)
	}
	f.Close()
	go func() {
		proc.waitErr = cmd.Wait()
		close(proc.done)
	}()
	t.Cleanup(func() {
		if !proc.exited() { // the test failed before stopping the pod
			_ = cmd.Process.Kill()
			<-proc.done
		}
		if t.Failed() {
			t.Logf("%s output (last 30 lines):\n%s", proc.name, tailText(proc.output(), 30))
		}
	})
	return proc
}

// stop terminates the pod in the kubelet's order: nginx's preStop hook
// (sleep, nginx -s quit, wait for nginx to exit), SIGTERM to nginx, and
// once nginx has exited SIGTERM to the bridge sidecar. All of it must end
// within terminationGracePeriodSeconds, after which the kubelet kills.
func (p *simPod) stop(t *testing.T) time.Duration {
	t.Helper()
	m := p.img.manifest
	n := m.container(t, "nginx")
	start := time.Now()
	budget := time.Duration(*m.spec().TerminationGracePeriodSeconds) * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	hook := p.command(t, n, n.Lifecycle.PreStop.Exec.Command)
	hookCmd := exec.CommandContext(ctx, hook.Path, hook.Args[1:]...)
	hookCmd.Env, hookCmd.Dir, hookCmd.SysProcAttr = hook.Env, hook.Dir, hook.SysProcAttr
	if out, err := hookCmd.CombinedOutput(); err != nil {
		t.Errorf("pod %s: nginx preStop hook: %v\n%s", p.name, err, out)
	}
	// The hook waits for nginx's drain: nginx must be gone (or going: it
	// removes its pid file just before it exits) before the SIGTERM, which
	// would stop it at once.
	select {
	case <-p.nginx.done:
	case <-time.After(2 * time.Second):
		t.Errorf("pod %s: nginx still runs after its preStop hook returned: the kubelet's SIGTERM would cut its requests", p.name)
	}
	p.terminate(t, p.nginx, ctx)
	p.terminate(t, p.bridge, ctx)
	took := time.Since(start)
	if took > budget {
		t.Errorf("pod %s took %v to stop: past terminationGracePeriodSeconds (%v) the kubelet kills it", p.name, took, budget)
	}
	return took
}

// terminate sends SIGTERM (if the process still runs) and expects a clean
// exit before ctx ends.
func (p *simPod) terminate(t *testing.T, proc *podProcess, ctx context.Context) {
	t.Helper()
	if !proc.exited() {
		if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil && !proc.exited() {
			t.Errorf("SIGTERM %s (pid %d): %v", proc.name, proc.cmd.Process.Pid, err)
		}
	}
	select {
	case <-proc.done:
		if proc.waitErr != nil {
			t.Errorf("%s exited with %v, want status 0:\n%s", proc.name, proc.waitErr, tailText(proc.output(), 30))
		}
	case <-ctx.Done():
		t.Errorf("%s still running at the end of the grace period", proc.name)
	}
}

func probeHTTP(addr, path string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func probeTCP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
