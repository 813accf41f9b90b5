package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// podManifests is what e2e/pod_test.go runs from deploy/k8s: the
// Deployment's pod template and the ConfigMaps its volumes name.
// (deploy/k8s_test.go checks the files against each other; this only
// reads them.)
type podManifests struct {
	deployment *appsv1.Deployment
	configMaps map[string]*corev1.ConfigMap
}

// loadPodManifests decodes deploy/k8s/*.yaml strictly, keeping the
// Deployment and the ConfigMaps.
func loadPodManifests(t *testing.T) podManifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	sort.Strings(files)
	m := podManifests{configMaps: map[string]*corev1.ConfigMap{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var into any
			var cm *corev1.ConfigMap
			switch tm.Kind {
			case "Deployment":
				m.deployment = &appsv1.Deployment{}
				into = m.deployment
			case "ConfigMap":
				cm = &corev1.ConfigMap{}
				into = cm
			default:
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if cm != nil {
				m.configMaps[cm.Name] = cm
			}
		}
	}
	if m.deployment == nil {
		t.Fatal("deploy/k8s holds no Deployment")
	}
	return m
}

func (m podManifests) spec() *corev1.PodSpec { return &m.deployment.Spec.Template.Spec }

// container finds a container of the pod: an init container (the bridge
// sidecar) or a main one.
func (m podManifests) container(t *testing.T, name string) *corev1.Container {
	t.Helper()
	s := m.spec()
	for _, list := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	t.Fatalf("deploy/k8s/deployment.yaml has no container %q", name)
	return nil
}

// containerPortNamed is c's container port called name.
func containerPortNamed(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

// templating is how one simulated pod differs from a real one: it runs on
// this host, so the paths its containers see and the ports they listen on
// are replaced in the texts the manifests give (config files, commands,
// hook, environment). Nothing else changes.
type templating struct {
	paths map[string]string // container path -> host path: volume mounts and image paths (/srv/app)
	ports map[string]string // exact string -> replacement: "listen 8080;", "0.0.0.0:9100" (and, not as root, socket-group)
}

// apply replaces, in one pass over s, each path of tp.paths where it
// stands as a whole path or a path prefix (after the start, a space, ':',
// '=' or a quote; before '/', the end, a space, ';' or a quote), the longest
// that fits first; then each string of tp.ports as it is. One pass, so that
// a host path put in is never replaced again (a host path under /tmp and
// the container path /tmp).
func (tp templating) apply(s string) string {
	keys := make([]string, 0, len(tp.paths))
	for k := range tp.paths {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	var out strings.Builder
	for i := 0; i < len(s); {
		replaced := false
		if i == 0 || strings.ContainsRune(" \t\n:='\"", rune(s[i-1])) {
			for _, k := range keys {
				after := s[i:]
				if !strings.HasPrefix(after, k) {
					continue
				}
				after = after[len(k):]
				if after == "" || strings.ContainsRune("/ \t\n;'\"", rune(after[0])) {
					out.WriteString(tp.paths[k])
					i += len(k)
					replaced = true
					break
				}
			}
		}
		if !replaced {
			out.WriteByte(s[i])
			i++
		}
	}
	s = out.String()
	for from, to := range tp.ports {
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}
