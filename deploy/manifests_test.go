// Package deploy holds the tests of the deployment artefacts in deploy/:
// every manifest is decoded strictly into the Kubernetes API types, then
// checked against the others, against bridge's own flags and admin
// endpoints, and against the nginx.conf it ships.
package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// manifestDir is deploy/k8s, relative to this package.
const manifestDir = "k8s"

// manifests is everything in deploy/k8s, decoded.
type manifests struct {
	deployment *appsv1.Deployment
	configMaps map[string]*corev1.ConfigMap // by name
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
}

// newObject is the typed object for an apiVersion and kind; the manifests
// may hold only these kinds.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	}
	return nil, fmt.Errorf("apiVersion %q kind %q: not a kind deploy/k8s is expected to hold", apiVersion, kind)
}

// docSeparator splits a multi-document YAML file: a line of "---" alone.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes one YAML document into its typed object; a field
// the type does not have, or a field given twice, is an error.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// documents are the non-empty YAML documents of a file.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// manifestFiles is every .yaml and .yml file in deploy/k8s, sorted.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(manifestDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", manifestDir)
	}
	return files
}

// loadManifests decodes every manifest strictly and files it by kind: one
// Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler,
// ConfigMaps by name, no name twice.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{configMaps: map[string]*corev1.ConfigMap{}}
	seen := map[string]string{}
	for _, file := range manifestFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range documents(data) {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Fatalf("%s (document %d): %v", file, i+1, err)
			}
			meta := obj.(metav1.Object)
			key := fmt.Sprintf("%T/%s", obj, meta.GetName())
			if meta.GetName() == "" {
				t.Fatalf("%s (document %d): %T without metadata.name", file, i+1, obj)
			}
			if prev, dup := seen[key]; dup {
				t.Fatalf("%s: %s is also defined in %s", file, key, prev)
			}
			seen[key] = file
			one := func(have bool) {
				if have {
					t.Fatalf("%s: a second %T (%s); the tests expect one", file, obj, meta.GetName())
				}
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				one(m.deployment != nil)
				m.deployment = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Service:
				one(m.service != nil)
				m.service = o
			case *policyv1.PodDisruptionBudget:
				one(m.pdb != nil)
				m.pdb = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				one(m.hpa != nil)
				m.hpa = o
			}
		}
	}
	switch {
	case m.deployment == nil:
		t.Fatal("no Deployment in deploy/k8s")
	case m.service == nil:
		t.Fatal("no Service in deploy/k8s")
	case m.pdb == nil:
		t.Fatal("no PodDisruptionBudget in deploy/k8s")
	case m.hpa == nil:
		t.Fatal("no HorizontalPodAutoscaler in deploy/k8s")
	}
	return m
}

// TestManifestsDecodeStrictly decodes every manifest into the k8s.io/api
// types, refusing unknown fields, and shows that the decoder does refuse
// them: a misspelt field in a copy of the Deployment must fail.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	t.Logf("decoded: Deployment %s, Service %s, PodDisruptionBudget %s, HorizontalPodAutoscaler %s, %d ConfigMaps",
		m.deployment.Name, m.service.Name, m.pdb.Name, m.hpa.Name, len(m.configMaps))

	data, err := os.ReadFile(filepath.Join(manifestDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to string }{
		{"\n          restartPolicy: Always", "\n          restartPolicyy: Always"},         // unknown field
		{"\n      terminationGracePeriodSeconds:", "\n      terminationGracePeriodSecond:"}, // unknown field
		{"\n      maxUnavailable: 0", "\n      maxUnavailable: 0\n      maxUnavailable: 1"}, // given twice
	} {
		bad := bytes.Replace(data, []byte(c.from), []byte(c.to), 1)
		if bytes.Equal(bad, data) {
			t.Fatalf("deployment.yaml has no %q to spoil", c.from)
		}
		if _, err := decodeStrict(bad); err == nil {
			t.Errorf("decodeStrict accepted deployment.yaml with %q: the decoder is not strict", c.to)
		}
	}
}
