package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

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
