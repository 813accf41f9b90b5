package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"bridge/bridge/admin"
	"bridge/bridge/cli"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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

// preStopCommand is nginx's preStop exec command, as one string.
func preStopCommand(t *testing.T, c *corev1.Container) string {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("container %s: no preStop exec hook (sleep, then nginx -s quit)", c.Name)
	}
	return strings.Join(c.Lifecycle.PreStop.Exec.Command, " ")
}

// preStopSleep is the sleep at the start of the preStop hook.
func preStopSleep(t *testing.T, c *corev1.Container) time.Duration {
	t.Helper()
	sleep := regexp.MustCompile(`(?:^|[\s;])sleep (\d+)(?:$|[\s;])`).FindStringSubmatch(preStopCommand(t, c))
	if sleep == nil {
		t.Fatalf("container %s: the preStop hook has no `sleep N` (whole seconds) to let endpoint removal propagate", c.Name)
	}
	s, _ := strconv.Atoi(sleep[1])
	return time.Duration(s) * time.Second
}

func duration(t *testing.T, cfg map[string]any, key string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(str(t, cfg, key))
	if err != nil {
		t.Fatalf("bridge config %s: %v", key, err)
	}
	return d
}

// stopMargin is what terminationGracePeriodSeconds keeps beyond the sum
// of the steps: signals, exec round trips, process exit.
const stopMargin = 5 * time.Second

// TestGraceArithmetic: the pod's termination fits its grace period. The
// kubelet runs nginx's preStop (sleep, then nginx drains: its requests in
// flight end within bridge's request timeout), SIGTERMs nginx, and then
// SIGTERMs bridge, which drains within its grace; all of it must end
// before terminationGracePeriodSeconds, when everything is killed.
func TestGraceArithmetic(t *testing.T) {
	m := loadManifests(t)
	_, cfg := m.bridgeConfig(t)
	sleep := preStopSleep(t, m.nginxContainer(t))
	timeout, grace := duration(t, cfg, "timeout"), duration(t, cfg, "grace")
	need := sleep + timeout + grace + stopMargin
	tgps := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if tgps == nil {
		t.Fatal("terminationGracePeriodSeconds is not set (the default 30s is not derived from bridge's grace)")
	}
	have := time.Duration(*tgps) * time.Second
	t.Logf("terminationGracePeriodSeconds %v; preStop sleep %v + request timeout %v + grace %v + margin %v = %v", have, sleep, timeout, grace, stopMargin, need)
	if have < need {
		t.Errorf("terminationGracePeriodSeconds %v < %v needed", have, need)
	}
	if grace <= 0 || timeout <= 0 {
		t.Errorf("bridge config grace %v, timeout %v: both must be set, or a stop is unbounded", grace, timeout)
	}
	// The startup probe must give bridge its whole start-timeout.
	p := m.bridgeContainer(t).StartupProbe
	if st := duration(t, cfg, "start-timeout"); p == nil || time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < st {
		t.Errorf("bridge startupProbe allows less than start-timeout %v", st)
	}
}

// readyPool is a dispatch pool with a ready worker, for the admin server.
type readyPool struct{}

func (readyPool) Ready() bool       { return true }
func (readyPool) Waiting() int      { return 0 }
func (readyPool) ReadyWorkers() int { return 1 }

// adminGet asks bridge's real admin handler for path.
func adminGet(path string) (int, string) {
	srv := admin.New(readyPool{}, admin.NewMetrics(readyPool{}))
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestProbesOnAdmin: the probes go to the admin port that bridge's config
// listens on, on every interface (the kubelet probes the pod IP), and to
// paths bridge's admin server answers: /readyz for startup and readiness,
// /healthz for liveness. POST /reload stays off.
func TestProbesOnAdmin(t *testing.T) {
	m := loadManifests(t)
	_, cfg := m.bridgeConfig(t)
	b := m.bridgeContainer(t)
	host, portText, err := net.SplitHostPort(str(t, cfg, "admin"))
	if err != nil {
		t.Fatalf("bridge config admin: %v", err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("bridge config admin %s: the kubelet probes the pod IP, listen on 0.0.0.0", cfg["admin"])
	}
	adminPort, _ := strconv.Atoi(portText)
	for _, c := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", b.StartupProbe, "/readyz"},
		{"readinessProbe", b.ReadinessProbe, "/readyz"},
		{"livenessProbe", b.LivenessProbe, "/healthz"},
	} {
		if c.probe == nil || c.probe.HTTPGet == nil {
			t.Errorf("bridge %s: want an httpGet probe of %s", c.kind, c.path)
			continue
		}
		g := c.probe.HTTPGet
		if got := containerPort(b, g.Port); int(got) != adminPort {
			t.Errorf("bridge %s port %s is container port %d, want the admin port %d", c.kind, g.Port.String(), got, adminPort)
		}
		if g.Path != c.path {
			t.Errorf("bridge %s path %q, want %s", c.kind, g.Path, c.path)
		}
		if code, body := adminGet(g.Path); code != http.StatusOK {
			t.Errorf("bridge's admin server answers %s with %d %q, want 200", g.Path, code, body)
		}
	}
	ann := m.deployment.Spec.Template.Annotations
	if ann["prometheus.io/port"] != portText || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations prometheus.io/port %q path %q, want %s and /metrics", ann["prometheus.io/port"], ann["prometheus.io/path"], portText)
	}
	if code, _ := adminGet("/metrics"); code != http.StatusOK {
		t.Errorf("bridge's admin server answers /metrics with %d", code)
	}
	if v, ok := cfg["admin-reload"]; ok && v != false {
		t.Errorf("bridge config admin-reload %v: POST /reload must stay off on an address the whole cluster reaches", v)
	}
	for _, p := range m.service.Spec.Ports {
		if containerPort(b, p.TargetPort) != 0 || p.TargetPort.IntValue() == adminPort {
			t.Errorf("Service port %s reaches bridge's admin port: /metrics must not be public", p.Name)
		}
	}
}

// TestBridgeConfigIsValid runs `bridge check --config FILE` in process on
// the ConfigMap's file: every key must be a flag of bridge serve with a
// value it takes, and the whole config must pass serve's checks. Only
// --chdir is given on the command line, to a real app (deploy/demo, a
// python:app:application app like the image's); the file's chdir is still
// checked as a value.
func TestBridgeConfigIsValid(t *testing.T) {
	m := loadManifests(t)
	text, _ := m.bridgeConfig(t)
	t.Setenv("BRIDGE_CACHE_DIR", t.TempDir())
	file := filepath.Join(t.TempDir(), "bridge.yaml")
	check := func(config string) (string, error) {
		if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errs bytes.Buffer
		err := cli.Run(context.Background(), []string{"check", "--config", file, "--chdir", "demo"}, &out, &errs)
		return out.String() + errs.String(), err
	}
	out, err := check(text)
	if err != nil {
		t.Fatalf("bridge check --config (the ConfigMap's bridge.yaml): %v\n%s", err, out)
	}
	if !strings.Contains(out, "ok: app:application loaded") {
		t.Errorf("bridge check output:\n%s", out)
	}
	// The check does look at the keys: a misspelt one fails it.
	if _, err := check(text + "wrokers: 2\n"); err == nil || !strings.Contains(err.Error(), `unknown key "wrokers"`) {
		t.Errorf("bridge check accepted a config with a misspelt key (err %v)", err)
	}
}

// TestBridgeCacheInImage: bridge runs its runner shim from
// $BRIDGE_CACHE_DIR only if nobody but its user and root can have written
// it. The kubelet makes emptyDirs writable by all (mode 2777, not sticky),
// and the root file system is read-only, so the shim must come extracted
// in the image: BRIDGE_CACHE_DIR names an image path, on no volume.
func TestBridgeCacheInImage(t *testing.T) {
	m := loadManifests(t)
	b := m.bridgeContainer(t)
	for _, e := range b.Env {
		if e.Name == "BRIDGE_CACHE_DIR" {
			if !path.IsAbs(e.Value) {
				t.Errorf("BRIDGE_CACHE_DIR %q: want an absolute path in the image", e.Value)
			}
			if vm, _, ok := mountOf(b, e.Value); ok {
				t.Errorf("BRIDGE_CACHE_DIR %s is on volume %s: bridge does not trust a shim on a volume others can write; extract it into the image", e.Value, vm.Name)
			}
			return
		}
	}
	t.Error("bridge container: no BRIDGE_CACHE_DIR; the default ($HOME/.cache) is on the read-only root and empty")
}

// selects reports whether selector matches the pod template's labels.
func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// TestServiceReachesNginx: the Service selects the pods and its
// targetPort is nginx's container port, which nginx.conf listens on.
func TestServiceReachesNginx(t *testing.T) {
	m := loadManifests(t)
	pod := m.deployment.Spec.Template.Labels
	if !selects(t, m.deployment.Spec.Selector, pod) {
		t.Errorf("the Deployment's selector does not match its pod labels %v", pod)
	}
	if !selects(t, metav1.SetAsLabelSelector(m.service.Spec.Selector), pod) {
		t.Errorf("Service selector %v does not match the pod labels %v", m.service.Spec.Selector, pod)
	}
	n := m.nginxContainer(t)
	conf := parseNginx(m.mountedFile(t, n, m.nginxConfPath(t)))
	listens := find(conf, "listen")
	if len(listens) != 1 {
		t.Fatalf("nginx.conf: %d listen directives, want 1", len(listens))
	}
	listen := listenPort(t, listens[0].args[0])
	if len(m.service.Spec.Ports) == 0 {
		t.Fatal("Service has no ports")
	}
	for _, p := range m.service.Spec.Ports {
		if got := containerPort(n, p.TargetPort); int(got) != listen {
			t.Errorf("Service port %d targets %s = nginx container port %d, but nginx.conf listens on %d", p.Port, p.TargetPort.String(), got, listen)
		}
	}
	if p := n.ReadinessProbe; p == nil || p.TCPSocket == nil || int(containerPort(n, p.TCPSocket.Port)) != listen {
		t.Errorf("nginx readinessProbe %+v: want tcpSocket on the listen port %d", p, listen)
	}
}

// TestRollingUpdateKeepsCapacity: a rollout adds a pod before it removes
// one, and the PodDisruptionBudget lets a node drain go on while keeping a
// pod up.
func TestRollingUpdateKeepsCapacity(t *testing.T) {
	m := loadManifests(t)
	ru := m.deployment.Spec.Strategy.RollingUpdate
	if m.deployment.Spec.Strategy.Type != "RollingUpdate" || ru == nil || ru.MaxUnavailable == nil ||
		ru.MaxUnavailable.String() != "0" || ru.MaxSurge == nil || ru.MaxSurge.String() == "0" {
		t.Errorf("strategy %+v: want RollingUpdate with maxUnavailable 0 and a maxSurge", m.deployment.Spec.Strategy)
	}
	if !selects(t, m.pdb.Spec.Selector, m.deployment.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget selector %v does not match the pod labels", m.pdb.Spec.Selector)
	}
	replicas := int32(1)
	if r := m.deployment.Spec.Replicas; r != nil {
		replicas = *r
	}
	if mi := m.pdb.Spec.MinAvailable; mi == nil || mi.IntValue() < 1 || int32(mi.IntValue()) >= replicas || int32(mi.IntValue()) >= *m.hpa.Spec.MinReplicas {
		t.Errorf("PodDisruptionBudget minAvailable %v: want at least 1 and below the replicas (%d) and the HPA's minReplicas, or no node could be drained", mi, replicas)
	}
}

// TestHPA: the autoscaler targets the Deployment, scales on CPU and on
// metrics bridge exports at /metrics, and README.md gives the metrics
// adapter a rule for each of them.
func TestHPA(t *testing.T) {
	m := loadManifests(t)
	ref := m.hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != m.deployment.Name {
		t.Errorf("HPA scaleTargetRef %+v, want apps/v1 Deployment %s", ref, m.deployment.Name)
	}
	_, exported := adminGet("/metrics")
	readme, err := os.ReadFile(filepath.Join(manifestDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cpu, pods := false, 0
	for _, ms := range m.hpa.Spec.Metrics {
		switch {
		case ms.Resource != nil && ms.Resource.Name == corev1.ResourceCPU:
			cpu = true
		case ms.Pods != nil:
			pods++
			name := ms.Pods.Metric.Name
			if !regexp.MustCompile(`(?m)^# TYPE ` + regexp.QuoteMeta(name) + ` gauge$`).MatchString(exported) {
				t.Errorf("HPA Pods metric %s: bridge's /metrics has no gauge of that name", name)
			}
			if rule := fmt.Sprintf("seriesQuery: '%s{", name); !bytes.Contains(readme, []byte(rule)) {
				t.Errorf("deploy/k8s/README.md gives the adapter no rule for %s (no %q)", name, rule)
			}
		}
	}
	if !cpu || pods == 0 {
		t.Errorf("HPA metrics: cpu %v, %d Pods metrics; want CPU utilisation and bridge's own load", cpu, pods)
	}
}
