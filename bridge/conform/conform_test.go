package conform

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"bridge/bridge/supervise"
)

func TestMain(m *testing.M) {
	serveKitRunner() // exits when this binary was started as a runner
	os.Exit(m.Run())
}

// runKit runs the named checks against the Go kit runner, broken as brk says.
func runKit(t *testing.T, brk string, only ...string) map[string]Result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs strings.Builder
	results, err := Run(ctx, Config{
		Command: supervise.Command{Path: exe, Env: []string{kitRunnerEnv + "=1", kitBreakEnv + "=" + brk}},
		Threads: 1, Slots: 1, StartTimeout: 20 * time.Second, Only: only, Log: &logs,
	})
	if err != nil {
		t.Fatalf("kit: %v\n%s", err, logs.String())
	}
	out := map[string]Result{}
	for _, r := range results {
		out[r.Name] = r
	}
	return out
}

// The Go runner keeps these rules; every check here passes on it.
func TestKitPassesAConformingRunner(t *testing.T) {
	only := []string{"handshake", "health", "stdio", "describe", "small-exchange", "deferred-head",
		"error-after-head", "stdout-hygiene", "running", "cancel-mid-stream"}
	got := runKit(t, "", only...)
	for _, name := range only {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s: not run", name)
			continue
		}
		if r.Outcome != "pass" {
			t.Errorf("%s: %s\n%s", name, r.Outcome, r.Detail)
		}
	}
}

// Each broken rule fails its check, with the contract item in the message.
func TestKitFailsABrokenRunner(t *testing.T) {
	for _, tc := range []struct {
		brk, check, want string
	}{
		{"two-frames", "small-exchange", "C7"},
		{"early-head", "deferred-head", "C9"},
		{"error-text", "error-after-head", "C10: the error text reached the body"},
		{"no-close", "cancel-mid-stream", "C14"},
		{"stdout", "stdout-hygiene", "C2"},
		{"no-running", "running", "C15"},
	} {
		t.Run(tc.brk, func(t *testing.T) {
			r := runKit(t, tc.brk, tc.check)[tc.check]
			if r.Outcome != "FAIL" || !strings.Contains(r.Detail, tc.want) {
				t.Fatalf("%s broken as %q: %s %q, want FAIL naming %q", tc.check, tc.brk, r.Outcome, r.Detail, tc.want)
			}
		})
	}
}
