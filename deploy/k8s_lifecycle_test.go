package deploy

import (
	"bytes"
	"context"
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
)

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
