package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY...
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions. It knows what the
// files in deploy/docker use: comments, blank lines and "\" continuations.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		more := strings.HasSuffix(trimmed, "\\")
		cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
		if more {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

// execForm parses a JSON array argument (ENTRYPOINT ["a", "b"]).
func execForm(t *testing.T, path string, in instruction, args string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		t.Errorf("%s:%d: %s is not in exec (JSON) form: %s", path, in.line, in.cmd, args)
	}
	return v
}

// imageConfig is deploy/docker/bridge.yaml, the config the images run with.
func imageConfig(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("docker", "bridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("deploy/docker/bridge.yaml: %v", err)
	}
	return cfg
}

// TestDockerfiles reads Dockerfile.python, .perl and .ruby and checks what
// a build cannot show without a Docker engine: a golang bookworm build
// stage that copies every directory cmd/bridge's packages live in; a
// debian:12-slim runtime stage that runs install-runtime.sh for its own
// family; OCI labels; a numeric non-root USER that is the one the script
// creates; HEALTHCHECK `bridge healthcheck` with the config serve reads;
// ENTRYPOINT bridge serve with the config file the image copies; and
// BRIDGE_RUNNER for the family. Every COPY source exists in the repository.
// If a Docker engine answers, `docker build --check` lints each file too.
func TestDockerfiles(t *testing.T) {
	pkgDirs := bridgeSourceDirs(t)
	if admin, _ := imageConfig(t)["admin"].(string); admin == "" {
		t.Error("deploy/docker/bridge.yaml has no admin address: the HEALTHCHECK needs one")
	}
	script, err := os.ReadFile(filepath.Join("docker", "install-runtime.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "uid=10001") {
		t.Fatal("install-runtime.sh no longer creates the bridge user as uid 10001, which the Dockerfiles' USER names")
	}
	for _, fam := range runtimeFamilies {
		path := filepath.Join("docker", "Dockerfile."+fam.name)
		t.Run(fam.name, func(t *testing.T) {
			ins := parseDockerfile(t, path)
			var froms []string
			stage := 0
			copied := map[string]bool{} // build-stage COPY sources
			labels := map[string]bool{}
			var user, entrypoint, cmd, healthcheck []string
			var ranScript, copiedConfig string
			shimsAsUser := false // RUN bridge shims after USER
			env := map[string]string{}
			for _, in := range ins {
				switch in.cmd {
				case "FROM":
					froms = append(froms, in.args)
					stage++
				case "COPY":
					f := strings.Fields(in.args)
					if strings.HasPrefix(f[0], "--from=") {
						continue
					}
					for _, src := range f[:len(f)-1] {
						if _, err := os.Stat(filepath.Join("..", src)); err != nil {
							t.Errorf("%s:%d: COPY source %s is not in the repository", path, in.line, src)
						}
						if stage == 1 {
							copied[strings.TrimSuffix(src, "/")] = true
						}
					}
					if f[0] == "deploy/docker/bridge.yaml" {
						copiedConfig = f[len(f)-1]
					}
				case "RUN":
					if m := regexp.MustCompile(`install-runtime\.sh\s+(\w+)`).FindStringSubmatch(in.args); m != nil && stage == 2 {
						ranScript = m[1]
					}
					if stage == 2 && len(user) > 0 && slices.Equal(execForm(t, path, in, in.args), []string{"bridge", "shims"}) {
						shimsAsUser = true
					}
				case "LABEL":
					for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z.]+)=`).FindAllStringSubmatch(in.args, -1) {
						labels[m[1]] = true
					}
				case "ENV":
					for _, m := range regexp.MustCompile(`(\w+)=(\S+)`).FindAllStringSubmatch(in.args, -1) {
						env[m[1]] = m[2]
					}
				case "USER":
					user = strings.Split(in.args, ":")
				case "ENTRYPOINT":
					entrypoint = execForm(t, path, in, in.args)
				case "CMD":
					cmd = execForm(t, path, in, in.args)
				case "HEALTHCHECK":
					_, c, ok := strings.Cut(in.args, "CMD ")
					if !ok {
						t.Errorf("%s:%d: HEALTHCHECK without CMD", path, in.line)
					}
					healthcheck = execForm(t, path, in, c)
				}
			}
			if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:1.26-bookworm AS ") || froms[1] != "debian:12-slim" {
				t.Errorf("stages %q: want golang:1.26-bookworm AS build, then debian:12-slim", froms)
			}
			for _, d := range append([]string{"go.mod", "go.sum"}, pkgDirs...) {
				if !copied[d] {
					t.Errorf("the build stage does not COPY %s, which `go build ./cmd/bridge` needs", d)
				}
			}
			if ranScript != fam.name {
				t.Errorf("the runtime stage runs install-runtime.sh %q, want %q", ranScript, fam.name)
			}
			for _, l := range []string{"title", "description", "version", "revision", "base.name"} {
				if !labels["org.opencontainers.image."+l] {
					t.Errorf("no LABEL org.opencontainers.image.%s", l)
				}
			}
			if !shimsAsUser {
				t.Errorf("no RUN [\"bridge\", \"shims\"] after USER: with a read-only root filesystem serve could not extract the runner shims")
			}
			if len(user) == 0 || user[0] != "10001" {
				t.Errorf("USER %v: want 10001 (the bridge user of install-runtime.sh, numeric for runAsNonRoot)", user)
			}
			if want := []string{"bridge", "healthcheck", "--config", copiedConfig}; copiedConfig == "" || !slices.Equal(healthcheck, want) {
				t.Errorf("HEALTHCHECK CMD %q, want %q: the admin address of the config serve reads", healthcheck, want)
			}
			if !slices.Equal(entrypoint, []string{"bridge", "serve"}) {
				t.Errorf("ENTRYPOINT %q, want [bridge serve]", entrypoint)
			}
			if copiedConfig == "" || !slices.Equal(cmd, []string{"--config", copiedConfig}) {
				t.Errorf("CMD %q: want --config and the path bridge.yaml is copied to (%q)", cmd, copiedConfig)
			}
			if env["BRIDGE_RUNNER"] != fam.spec {
				t.Errorf("ENV BRIDGE_RUNNER=%q, want %q", env["BRIDGE_RUNNER"], fam.spec)
			}
			if env["BRIDGE_CACHE_DIR"] != "/var/lib/bridge/cache" {
				t.Errorf("ENV BRIDGE_CACHE_DIR=%q, want the directory install-runtime.sh makes for it", env["BRIDGE_CACHE_DIR"])
			}
			dockerBuildCheck(t, path)
		})
	}
}

// dockerBuildCheck lints a Dockerfile with `docker build --check` when a
// Docker engine answers; without one (as on CI machines without Docker)
// the parsing checks above stand alone.
func dockerBuildCheck(t *testing.T, path string) {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err != nil || exec.Command(docker, "info").Run() != nil {
		return
	}
	c := exec.Command(docker, "build", "--check", "-f", filepath.Join("deploy", path), ".")
	c.Dir = ".."
	done := make(chan struct{})
	var out []byte
	go func() { out, err = c.CombinedOutput(); close(done) }()
	select {
	case <-done:
		if err != nil {
			t.Errorf("docker build --check %s: %v\n%s", path, err, out)
		}
	case <-time.After(60 * time.Second):
		_ = c.Process.Kill()
		<-done
		t.Errorf("docker build --check %s did not finish within 60s", path)
	}
}

// bridgeSourceDirs are the top-level directories of the packages
// cmd/bridge is built from (go list -deps), e.g. bridge, runners, python.
func bridgeSourceDirs(t *testing.T) []string {
	t.Helper()
	c := exec.Command(goTool(), "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/bridge")
	c.Dir = ".."
	out, err := c.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/bridge: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var dirs []string
	for _, d := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, d)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, fetched by go mod download
		}
		top := strings.Split(rel, string(filepath.Separator))[0]
		if !seen[top] {
			seen[top] = true
			dirs = append(dirs, top)
		}
	}
	return dirs
}

// TestComposeFile parses deploy/docker/compose.yaml and checks that its
// parts fit: the build context is the repository and the Dockerfile exists;
// every mounted file exists; nginx mounts deploy/nginx/bridge-uwsgi.conf,
// whose uwsgi_pass socket is the uwsgi listener of the image's bridge.yaml,
// in a volume both containers mount there; the static root the nginx file
// aliases is mounted into nginx; bridge may chgrp the socket to the group
// it is given; nginx waits for bridge's healthcheck, which the Dockerfile
// has; and the nginx file's sizes and timeouts match bridge.yaml's.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("docker", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Build struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Image       string            `yaml:"image"`
			GroupAdd    []string          `yaml:"group_add"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("deploy/docker/compose.yaml: %v", err)
	}
	br, ok := c.Services["bridge"]
	if !ok {
		t.Fatal("compose.yaml has no bridge service")
	}
	ng, ok := c.Services["nginx"]
	if !ok {
		t.Fatal("compose.yaml has no nginx service")
	}
	if _, err := os.Stat(filepath.Join("docker", br.Build.Context, "go.mod")); err != nil {
		t.Errorf("bridge's build context %s is not the repository root", br.Build.Context)
	}
	dockerfile := filepath.Join("docker", br.Build.Context, br.Build.Dockerfile)
	if _, err := os.Stat(dockerfile); err != nil {
		t.Errorf("bridge's Dockerfile %s: %v", br.Build.Dockerfile, err)
	}

	// mounts maps container path → host path (or volume name) per service.
	mounts := func(name string, vols []string) map[string]string {
		m := map[string]string{}
		for _, v := range vols {
			f := strings.Split(v, ":")
			if len(f) < 2 {
				t.Errorf("%s: volume %q is not SOURCE:TARGET", name, v)
				continue
			}
			src, dst := f[0], f[1]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join("docker", src)); err != nil {
					t.Errorf("%s mounts %s, which does not exist in the repository", name, src)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which compose.yaml does not declare", name, src)
			}
			m[dst] = src
		}
		return m
	}
	bm, nm := mounts("bridge", br.Volumes), mounts("nginx", ng.Volumes)

	var confPath string
	for dst, src := range nm {
		if filepath.Base(src) == "bridge-uwsgi.conf" && strings.HasPrefix(dst, "/etc/nginx/conf.d/") {
			confPath = filepath.Join("docker", src)
		}
	}
	if confPath == "" {
		t.Fatal("nginx does not mount deploy/nginx/bridge-uwsgi.conf into /etc/nginx/conf.d/")
	}
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	nginxSock := firstMatch(t, conf, `uwsgi_pass unix:(\S+);`)
	cfg := imageConfig(t)
	if cfg["uwsgi"] != "unix:"+nginxSock {
		t.Errorf("bridge.yaml's uwsgi is %v, nginx passes to unix:%s", cfg["uwsgi"], nginxSock)
	}
	sockDir := filepath.Dir(nginxSock)
	if v := bm[sockDir]; v == "" || v != nm[sockDir] || !isNamedVolume(v) {
		t.Errorf("the socket directory %s must be one named volume in both services (bridge: %q, nginx: %q)", sockDir, bm[sockDir], nm[sockDir])
	}
	static := strings.TrimSuffix(firstMatch(t, conf, `alias (\S+);`), "/")
	if nm[static] == "" {
		t.Errorf("nginx's alias root %s is not mounted into the nginx service", static)
	}
	if chdir, _ := cfg["chdir"].(string); bm[chdir] == "" {
		t.Errorf("bridge.yaml's chdir %v (the app) is not mounted into the bridge service", cfg["chdir"])
	}
	if g := br.Environment["BRIDGE_SOCKET_GROUP"]; g == "" || !slices.Contains(br.GroupAdd, g) {
		t.Errorf("bridge gives the socket group %q but group_add is %v: bridge must be in that group to chgrp", g, br.GroupAdd)
	}
	if ng.DependsOn["bridge"].Condition != "service_healthy" {
		t.Errorf("nginx should wait for bridge's healthcheck (depends_on: bridge: condition: service_healthy)")
	}
	hasHealthcheck := false
	for _, in := range parseDockerfile(t, dockerfile) {
		hasHealthcheck = hasHealthcheck || in.cmd == "HEALTHCHECK"
	}
	if !hasHealthcheck {
		t.Errorf("%s has no HEALTHCHECK, which nginx's depends_on waits for", dockerfile)
	}
	checkNginxMatchesBridge(t, confPath, cfg)
	checkNginxMatchesBridge(t, filepath.Join("nginx", "bridge-http.conf"), cfg)
}

func isNamedVolume(src string) bool { return src != "" && !strings.ContainsAny(src, "./") }

func firstMatch(t *testing.T, b []byte, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in the nginx file", re)
	}
	return string(m[1])
}

// checkNginxMatchesBridge: client_max_body_size is bridge's max-body-size,
// and nginx's read timeout is longer than bridge's timeout, so bridge's 504
// is the one the client gets.
func checkNginxMatchesBridge(t *testing.T, path string, cfg map[string]any) {
	t.Helper()
	conf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := firstMatch(t, conf, `client_max_body_size (\d+)m;`)
	if want := size + "M"; cfg["max-body-size"] != want {
		t.Errorf("%s: client_max_body_size %sm, bridge.yaml max-body-size %v", path, size, cfg["max-body-size"])
	}
	read, err := time.ParseDuration(firstMatch(t, conf, `(?:uwsgi|proxy)_read_timeout (\S+);`))
	if err != nil {
		t.Fatal(err)
	}
	bt, err := time.ParseDuration(cfg["timeout"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if read <= bt {
		t.Errorf("%s: read timeout %v is not above bridge's timeout %v", path, read, bt)
	}
}
