package deploy

import (
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestSidecarOrder: bridge is a native sidecar (an init container with
// restartPolicy Always), so the kubelet starts it before nginx and stops
// it after nginx; nginx is the main container.
func TestSidecarOrder(t *testing.T) {
	m := loadManifests(t)
	b := m.bridgeContainer(t)
	if b.RestartPolicy == nil || *b.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("init container %s: restartPolicy %v, want Always (a native sidecar, Kubernetes >= 1.29)", b.Name, b.RestartPolicy)
	}
	if b.StartupProbe == nil {
		t.Errorf("init container %s has no startupProbe: the kubelet would start nginx before bridge listens", b.Name)
	}
	if n := len(m.deployment.Spec.Template.Spec.Containers); n != 1 {
		t.Errorf("%d main containers, want nginx alone", n)
	}
	m.nginxContainer(t)
}

// TestRestrictedSecurityContext: both containers meet the "restricted"
// Pod Security Standard, and have resource requests and limits.
func TestRestrictedSecurityContext(t *testing.T) {
	m := loadManifests(t)
	spec := m.deployment.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.FSGroup == nil ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, fsGroup and seccompProfile RuntimeDefault", psc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken: want false, neither container talks to the API server")
	}
	for _, c := range []*corev1.Container{m.bridgeContainer(t), m.nginxContainer(t)} {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		case sc.RunAsUser == nil || *sc.RunAsUser == 0:
			t.Errorf("container %s: want a numeric non-root runAsUser (runAsNonRoot cannot check a user name)", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
			t.Errorf("container %s: capabilities %+v, want drop [ALL] and nothing added", c.Name, sc.Capabilities)
		case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("container %s: seccompProfile is not RuntimeDefault", c.Name)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("container %s: no %s request (the HPA's CPU utilisation needs the requests)", c.Name, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("container %s: no %s limit", c.Name, r)
			}
		}
	}
}

// TestSocketShared: the socket bridge creates (bridge's config) is on an
// emptyDir mounted in both containers, nginx.conf passes to that path,
// and the socket's group is the pod's fsGroup with mode 0660, so nginx's
// user (which has the fsGroup as a supplementary group) may connect.
func TestSocketShared(t *testing.T) {
	m := loadManifests(t)
	_, cfg := m.bridgeConfig(t)
	b, n := m.bridgeContainer(t), m.nginxContainer(t)
	sock, ok := strings.CutPrefix(str(t, cfg, "uwsgi"), "unix:")
	if !ok || !path.IsAbs(sock) {
		t.Fatalf("bridge config uwsgi %q: want unix:/absolute/path", cfg["uwsgi"])
	}
	bm, rel, ok := mountOf(b, sock)
	if !ok || bm.ReadOnly || m.volume(t, bm.Name).EmptyDir == nil {
		t.Fatalf("bridge's socket %s is not on a writable emptyDir mount of the bridge container", sock)
	}
	var nginxSock string
	for _, vm := range n.VolumeMounts {
		if vm.Name == bm.Name {
			nginxSock = path.Join(vm.MountPath, rel)
		}
	}
	if nginxSock == "" {
		t.Fatalf("volume %s (bridge's socket) is not mounted in the nginx container", bm.Name)
	}
	conf := parseNginx(m.mountedFile(t, n, m.nginxConfPath(t)))
	var passes []string
	for _, d := range find(conf, "server") { // in an upstream block
		if len(d.args) > 0 && len(d.context) > 0 && d.context[len(d.context)-1] == "upstream" {
			passes = append(passes, d.args[0])
		}
	}
	for _, d := range find(conf, "uwsgi_pass") {
		if strings.HasPrefix(d.args[0], "unix:") {
			passes = append(passes, d.args[0])
		}
	}
	if len(passes) != 1 || passes[0] != "unix:"+nginxSock {
		t.Errorf("nginx.conf passes to %q, want exactly unix:%s (bridge's socket as nginx sees it)", passes, nginxSock)
	}
	fsGroup := m.deployment.Spec.Template.Spec.SecurityContext.FSGroup
	if g := str(t, cfg, "socket-group"); fsGroup == nil || g != strconv.FormatInt(*fsGroup, 10) {
		t.Errorf("bridge config socket-group %q, want the pod's fsGroup %v", g, fsGroup)
	}
	if mode := str(t, cfg, "socket-mode"); mode != "0660" {
		t.Errorf("bridge config socket-mode %q, want 0660: owner and group (nginx) only", mode)
	}
}

// TestNginxPaths: nginx reads its nginx.conf from the nginx ConfigMap, and
// everything it writes (pid file, temp files) is on a writable emptyDir,
// since its root file system is read-only; the preStop hook names the same
// config and pid file; nginx listens on an unprivileged port.
func TestNginxPaths(t *testing.T) {
	m := loadManifests(t)
	n := m.nginxContainer(t)
	confPath := m.nginxConfPath(t)
	conf := parseNginx(m.mountedFile(t, n, confPath))
	pids := find(conf, "pid")
	if len(pids) != 1 {
		t.Fatalf("nginx.conf: %d pid directives, want 1", len(pids))
	}
	pid := pids[0].args[0]
	for _, d := range append(pids, findSuffix(conf, "_temp_path")...) {
		if !m.writable(t, n, d.args[0]) {
			t.Errorf("nginx.conf %s %s: not on a writable emptyDir of the nginx container (the root fs is read-only)", d.name, d.args[0])
		}
	}
	if got := len(findSuffix(conf, "_temp_path")); got != 5 {
		t.Errorf("nginx.conf sets %d *_temp_path directives, want all 5 (client_body, proxy, fastcgi, uwsgi, scgi): the compiled-in ones are on the read-only root", got)
	}
	hook := preStopCommand(t, n)
	for _, want := range []string{"-c " + confPath, "-s quit", pid} {
		if !strings.Contains(hook, want) {
			t.Errorf("nginx preStop %q does not contain %q", hook, want)
		}
	}
	for _, d := range find(conf, "listen") {
		if port := listenPort(t, d.args[0]); port < 1024 {
			t.Errorf("nginx.conf listen %s: a privileged port, nginx runs as non-root without capabilities", d.args[0])
		}
	}
}

func findSuffix(ds []directive, suffix string) []directive {
	var out []directive
	for _, d := range ds {
		if strings.HasSuffix(d.name, suffix) {
			out = append(out, d)
		}
	}
	return out
}

// listenPort is the port of an nginx listen argument: "8080" or "ADDR:8080".
func listenPort(t *testing.T, arg string) int {
	t.Helper()
	if i := strings.LastIndex(arg, ":"); i >= 0 {
		arg = arg[i+1:]
	}
	p, err := strconv.Atoi(arg)
	if err != nil {
		t.Fatalf("nginx listen %q: want a port or ADDR:PORT", arg)
	}
	return p
}

// TestNginxTimeoutsFitBridge: nginx waits for bridge longer than bridge's
// request timeout, so a slow app gets bridge's 504 (logged, counted) and
// not nginx's; and nginx does not retry on its own.
func TestNginxTimeoutsFitBridge(t *testing.T) {
	m := loadManifests(t)
	_, cfg := m.bridgeConfig(t)
	timeout := duration(t, cfg, "timeout")
	conf := parseNginx(m.mountedFile(t, m.nginxContainer(t), m.nginxConfPath(t)))
	for _, name := range []string{"uwsgi_read_timeout", "uwsgi_send_timeout"} {
		ds := find(conf, name)
		if len(ds) != 1 {
			t.Errorf("nginx.conf: %d %s directives, want 1", len(ds), name)
			continue
		}
		d, err := time.ParseDuration(ds[0].args[0])
		if err != nil || d <= timeout {
			t.Errorf("nginx.conf %s %s: want a duration above bridge's timeout %v", name, ds[0].args[0], timeout)
		}
	}
	if ds := find(conf, "uwsgi_next_upstream"); len(ds) != 1 || ds[0].args[0] != "off" {
		t.Errorf("nginx.conf: want uwsgi_next_upstream off (bridge retries only what is safe)")
	}
}
