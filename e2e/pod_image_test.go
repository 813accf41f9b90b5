package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// containerPath is the usual PATH of an image; a simulated container has
// the directory with the image's bridge in front of it.
const containerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// podImage stands for what the images bring: bridge on PATH, the app in
// the config's chdir, the runner shim extracted in BRIDGE_CACHE_DIR (which
// belongs to bridge's user, as in deploy/docker's image).
type podImage struct {
	binDir   string            // holds "bridge"
	paths    map[string]string // image path -> host path (/srv/app, /var/lib/bridge/cache)
	asRoot   bool              // run the containers as their runAsUser, like the kubelet
	fsGroup  int64
	sockGrp  string // socket-group to use when not root: our own group
	manifest podManifests
}

// newPodImage lays out the image parts on this host: a copy of the bridge
// binary, a copy of deploy/demo as the app, and the shim extracted by
// `bridge check`, as the image's build would.
func newPodImage(t *testing.T, m podManifests) *podImage {
	t.Helper()
	img := &podImage{paths: map[string]string{}, asRoot: os.Geteuid() == 0, manifest: m}
	if fg := m.spec().SecurityContext.FSGroup; fg != nil {
		img.fsGroup = *fg
	}
	img.sockGrp = strconv.Itoa(os.Getgid())
	root := shortTempDir(t)
	chmodOrFail(t, root, 0o755)

	img.binDir = filepath.Join(root, "bin")
	mkdirMode(t, img.binDir, 0o755)
	copyFileMode(t, bridgeBin, filepath.Join(img.binDir, "bridge"), 0o755)

	b := m.container(t, "bridge")
	cfg := bridgeConfigText(t, m)
	var keys map[string]any
	if err := yaml.Unmarshal([]byte(cfg), &keys); err != nil {
		t.Fatalf("bridge config: %v", err)
	}
	chdir, _ := keys["chdir"].(string)
	app := filepath.Join(root, "app")
	mkdirMode(t, app, 0o755)
	copyFileMode(t, filepath.Join(repoRoot, "deploy", "demo", "app.py"), filepath.Join(app, "app.py"), 0o644)
	img.paths[chdir] = app

	for _, e := range b.Env {
		if e.Name != "BRIDGE_CACHE_DIR" {
			continue
		}
		// As deploy/docker's image: the cache belongs to bridge's user,
		// mode 0700, and a build step run as that user fills it.
		cache := filepath.Join(root, "cache")
		mkdirMode(t, cache, 0o700)
		cred := img.credential(b)
		if cred != nil {
			if err := os.Chown(cache, int(cred.Credential.Uid), int(cred.Credential.Gid)); err != nil {
				t.Fatal(err)
			}
		}
		img.paths[e.Value] = cache
		shims := exec.Command(filepath.Join(img.binDir, "bridge"), "shims")
		shims.Env = []string{"PATH=" + containerPath, "HOME=/", "BRIDGE_CACHE_DIR=" + cache}
		shims.Dir = "/"
		shims.SysProcAttr = cred
		if out, err := shims.CombinedOutput(); err != nil {
			t.Fatalf("extract the runner shims as the image build does (bridge shims): %v\n%s", err, out)
		}
	}
	return img
}

// bridgeConfigText is the bridge config file from its ConfigMap, found
// through the bridge container's --config and its volume mount.
func bridgeConfigText(t *testing.T, m podManifests) string {
	t.Helper()
	b := m.container(t, "bridge")
	argv := append(append([]string{}, b.Command...), b.Args...)
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == "--config" {
			return configMapFile(t, m, b, argv[i+1])
		}
	}
	t.Fatalf("bridge container runs %q: no --config", argv)
	return ""
}

// configMapFile is the ConfigMap key that c sees at file.
func configMapFile(t *testing.T, m podManifests, c *corev1.Container, file string) string {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(file) != vm.MountPath {
			continue
		}
		for _, v := range m.spec().Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil {
				if data, ok := m.configMaps[v.ConfigMap.Name].Data[filepath.Base(file)]; ok {
					return data
				}
			}
		}
	}
	t.Fatalf("container %s: %s is in no ConfigMap volume", c.Name, file)
	return ""
}

// credential is the user, group and supplementary fsGroup that the kubelet
// runs c's processes as; none when the test is not root.
func (img *podImage) credential(c *corev1.Container) *syscall.SysProcAttr {
	if !img.asRoot {
		return nil
	}
	sc := c.SecurityContext
	return &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(*sc.RunAsUser), Gid: uint32(*sc.RunAsGroup), Groups: []uint32{uint32(img.fsGroup)},
	}}
}

func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	chmodOrFail(t, dir, mode)
}

func chmodOrFail(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFileMode(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
	chmodOrFail(t, to, mode)
}
