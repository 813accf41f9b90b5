package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	// repoRoot is the module root (the directory holding go.mod).
	repoRoot string
	// bridgeBin is the bridge binary TestMain built for this run.
	bridgeBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "bridge-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go tool is not on PATH:", err)
		return 2
	}
	bridgeBin = filepath.Join(dir, "bridge")
	build := exec.Command(goTool, "build", "-o", bridgeBin, "./cmd/bridge")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/bridge: %v\n%s", err, out)
		return 2
	}
	return m.Run()
}

// findRepoRoot walks up from the package directory to the go.mod of module
// bridge.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "bridge")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (go.mod with cmd/bridge) above the e2e package")
		}
		dir = parent
	}
}

var trackOnce sync.Once

// trackSources stats every file the bridge binary and the apps are made
// of. The binary is built by a subprocess, which go test's result cache does
// not see; files a test stats are part of the cache key, so a change in any
// of them makes `go test ./e2e/` run again. It must run inside m.Run (where
// the test log records file access), so tests call it, not TestMain.
func trackSources() {
	trackOnce.Do(func() { statTree(repoRoot) })
}

// statTree stats every source the e2e tests run: Go (cmd, bridge, runners,
// runners/kit included), the shims (python, perl, ruby), example runners
// (examples/runners/node), the proto and the test apps.
func statTree(root string) {
	for _, dir := range []string{"cmd", "bridge", "runners", "python", "perl", "ruby", "examples", "proto", "testdata", "go.mod", "go.sum"} {
		_ = filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if name := d.Name(); name == "__pycache__" || name == ".pytest_cache" || name == "node_modules" {
					return filepath.SkipDir
				}
				return nil
			}
			_, _ = os.Stat(path)
			return nil
		})
	}
}

// appDir is a shared test app's directory, testdata/apps/NAME.
func appDir(name string) string {
	return filepath.Join(repoRoot, "testdata", "apps", name)
}
