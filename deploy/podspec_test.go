package deploy

import (
	"path"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The containers' names in deployment.yaml.
const (
	bridgeName = "bridge"
	nginxName  = "nginx"
)

// bridgeContainer is the bridge sidecar: an init container.
func (m manifests) bridgeContainer(t *testing.T) *corev1.Container {
	t.Helper()
	for i := range m.deployment.Spec.Template.Spec.InitContainers {
		if c := &m.deployment.Spec.Template.Spec.InitContainers[i]; c.Name == bridgeName {
			return c
		}
	}
	t.Fatalf("no init container %q (the bridge sidecar) in Deployment %s", bridgeName, m.deployment.Name)
	return nil
}

// nginxContainer is the main container.
func (m manifests) nginxContainer(t *testing.T) *corev1.Container {
	t.Helper()
	for i := range m.deployment.Spec.Template.Spec.Containers {
		if c := &m.deployment.Spec.Template.Spec.Containers[i]; c.Name == nginxName {
			return c
		}
	}
	t.Fatalf("no container %q in Deployment %s", nginxName, m.deployment.Name)
	return nil
}

func (m manifests) volume(t *testing.T, name string) corev1.Volume {
	t.Helper()
	for _, v := range m.deployment.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("volume %q is mounted but not in the pod's volumes", name)
	return corev1.Volume{}
}

// mountOf is the volume mount of c that holds file (an absolute path in
// the container), and file's path inside the volume; ok is false if file
// is on the container's own (read-only) root file system.
func mountOf(c *corev1.Container, file string) (corev1.VolumeMount, string, bool) {
	var best corev1.VolumeMount
	found := false
	for _, vm := range c.VolumeMounts {
		if (file == vm.MountPath || strings.HasPrefix(file, vm.MountPath+"/")) &&
			(!found || len(vm.MountPath) > len(best.MountPath)) {
			best, found = vm, true
		}
	}
	if !found {
		return best, "", false
	}
	return best, strings.TrimPrefix(strings.TrimPrefix(file, best.MountPath), "/"), true
}

// mountedFile is the content of a file that c reads from a ConfigMap
// volume: the mount, its ConfigMap and the key named by the file name.
func (m manifests) mountedFile(t *testing.T, c *corev1.Container, file string) string {
	t.Helper()
	vm, rel, ok := mountOf(c, file)
	if !ok {
		t.Fatalf("container %s: %s is in no volume mount", c.Name, file)
	}
	v := m.volume(t, vm.Name)
	if v.ConfigMap == nil {
		t.Fatalf("container %s: %s is on volume %s, which is not a ConfigMap", c.Name, file, vm.Name)
	}
	cm, ok := m.configMaps[v.ConfigMap.Name]
	if !ok {
		t.Fatalf("volume %s names ConfigMap %q, which deploy/k8s does not define", vm.Name, v.ConfigMap.Name)
	}
	data, ok := cm.Data[rel]
	if !ok {
		t.Fatalf("container %s reads %s, but ConfigMap %s has no key %q", c.Name, file, cm.Name, rel)
	}
	return data
}

// writable says whether c can write at dir: an emptyDir mounted writable.
func (m manifests) writable(t *testing.T, c *corev1.Container, dir string) bool {
	t.Helper()
	vm, _, ok := mountOf(c, dir)
	return ok && !vm.ReadOnly && m.volume(t, vm.Name).EmptyDir != nil
}

// argAfter is the argument after flag in args, or "".
func argAfter(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// containerPort resolves a probe's or Service's port (a number or a port
// name) against c's declared ports; 0 if it names no port of c.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// bridgeConfig is the bridge config file the sidecar's --config names,
// read from its ConfigMap: the raw text and its keys and values.
func (m manifests) bridgeConfig(t *testing.T) (string, map[string]any) {
	t.Helper()
	c := m.bridgeContainer(t)
	file := argAfter(append(c.Command, c.Args...), "--config")
	if file == "" {
		t.Fatalf("bridge container runs %q: no --config FILE", append(c.Command, c.Args...))
	}
	text := m.mountedFile(t, c, file)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("bridge config %s: %v", file, err)
	}
	return text, cfg
}

// str is a single string value of the bridge config ("" if unset).
func str(t *testing.T, cfg map[string]any, key string) string {
	t.Helper()
	switch v := cfg[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case []any:
		if len(v) == 1 {
			if s, ok := v[0].(string); ok {
				return s
			}
		}
	}
	t.Fatalf("bridge config %s: want one string value, got %#v", key, cfg[key])
	return ""
}

// nginxConfPath is the file nginx's -c names.
func (m manifests) nginxConfPath(t *testing.T) string {
	t.Helper()
	c := m.nginxContainer(t)
	file := argAfter(append(c.Command, c.Args...), "-c")
	if file == "" || !path.IsAbs(file) {
		t.Fatalf("nginx container runs %q: want -c /absolute/nginx.conf", append(c.Command, c.Args...))
	}
	return file
}

// directive is one nginx directive: its name and arguments, with the
// names of the blocks around it ("http", "server", "location").
type directive struct {
	name    string
	args    []string
	context []string
}

// parseNginx splits nginx.conf into directives. It knows the syntax this
// repository's configs use: no quoted strings with ';' or braces in them.
func parseNginx(conf string) []directive {
	var out []directive
	var stack []string
	var words []string
	for _, line := range strings.Split(conf, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		line = strings.NewReplacer(";", " ; ", "{", " { ", "}", " } ").Replace(line)
		for _, w := range strings.Fields(line) {
			switch w {
			case ";":
				if len(words) > 0 {
					out = append(out, directive{words[0], words[1:], append([]string(nil), stack...)})
				}
				words = nil
			case "{":
				if len(words) > 0 {
					stack = append(stack, words[0])
				}
				words = nil
			case "}":
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
				words = nil
			default:
				words = append(words, w)
			}
		}
	}
	return out
}

// find is every directive called name.
func find(ds []directive, name string) []directive {
	var out []directive
	for _, d := range ds {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}
