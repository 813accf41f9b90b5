package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// kitRunners are the runners whose kit app `bridge conform` checks in
// `make test`: every built-in runner and the Node.js example runner.
// docs/coverage counts the kit's checks as covering their IDs for each.
// The threaded runs take another path in the Python (native server with a
// thread per Slot stream) and Ruby (a gate in front of several app threads) shims.
var kitRunners = []struct {
	name, spec, dir string
	args            []string
}{
	{"python", "python:app:application", "runners/kit/python", nil},
	{"python-threads", "python:app:application", "runners/kit/python", []string{"--threads", "2", "--slots", "6"}},
	{"perl", "perl:app.psgi", "runners/kit/perl", nil},
	{"ruby", "ruby:config.ru", "runners/kit/ruby", nil},
	{"ruby-threads", "ruby:config.ru", "runners/kit/ruby", []string{"--threads", "2", "--slots", "6"}},
	{"node", "exec:node ../runner.js app.js", "examples/runners/node/kit", nil},
}

// TestConformanceKit runs the runner conformance kit (C1–C21 and the G
// items it names) against each runner's kit app, as `make conformance` does.
func TestConformanceKit(t *testing.T) {
	trackSources()
	for _, r := range kitRunners {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			if r.name == "node" {
				requireNode(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			args := append([]string{"conform", "--runner", r.spec, "--chdir", filepath.Join(repoRoot, r.dir)}, r.args...)
			cmd := exec.CommandContext(ctx, bridgeBin, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bridge conform --runner %s: %v\n%s", r.spec, err, out)
			}
			if !regexp.MustCompile(`\d+ checks: \d+ passed, 0 failed`).Match(out) {
				t.Fatalf("no passing summary line:\n%s", out)
			}
			t.Logf("\n%s", out)
		})
	}
}

// requireNode fails (never skips) when the Node.js runner cannot run: CI
// installs node and the runner's packages (make node-deps, which make test runs).
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not on PATH: run `make node-deps` (installs nodejs and the Node runner's npm packages)")
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "examples/runners/node/node_modules/@grpc/grpc-js")); err != nil {
		t.Fatal("examples/runners/node/node_modules is missing: run `make node-deps` (npm ci in examples/runners/node)")
	}
}
