package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runBridge runs a bridge command that must end by itself within 60 s.
func runBridge(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	trackSources()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bridgeBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("bridge %v did not finish within 60s:\n%s", args, errb.String())
	}
	return out.String(), errb.String(), err
}

// reasonLine is the last stderr line that is not a JSON log record: the
// one-line reason bridge gives when it fails.
func reasonLines(stderr string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if line != "" && !strings.HasPrefix(line, "{") {
			out = append(out, line)
		}
	}
	return out
}

// TestCheck covers `bridge check` and G24 (an app that fails to load makes
// the runner fail its readiness): ok and exit 0 for the Flask app; for a
// syntax error, a missing callable or a missing module, a non-zero exit and
// one line on stderr that says why.
func TestCheck(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, err := runBridge(t, "check", "--runner", "python:app:application", "--chdir", appDir("flask_app"))
		if err != nil {
			t.Fatalf("bridge check: %v\n%s", err, stderr)
		}
		if !strings.HasPrefix(stdout, "ok: app:application loaded\n") {
			t.Errorf("stdout %q, want it to start with %q", stdout, "ok: app:application loaded")
		}
	})
	dir := t.TempDir()
	files := map[string]string{
		"syntax_error.py": "def application(environ, start_response:\n    pass\n",
		"no_callable.py":  "application = None\nother = 1\n",
		"raises.py":       "raise RuntimeError('import-time failure')\n",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, spec, reason string }{
		{"syntax_error", "syntax_error:application", "SyntaxError"},
		{"missing_callable", "no_callable:missing", "has no attribute 'missing'"},
		{"not_callable", "no_callable:application", "not callable"},
		{"missing_module", "no_such_module:application", "No module named 'no_such_module'"},
		{"import_raises", "raises:application", "RuntimeError: import-time failure"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runBridge(t, "check", "--runner", "python:"+c.spec, "--chdir", dir)
			if err == nil {
				t.Fatalf("bridge check %s exited 0, want non-zero; stdout %q", c.spec, stdout)
			}
			if strings.Contains(stdout, "ok") {
				t.Errorf("stdout %q says ok", stdout)
			}
			lines := reasonLines(stderr)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "bridge: ") || !strings.Contains(lines[0], c.reason) {
				t.Errorf("stderr reason lines %q, want one line starting with %q mentioning %q; stderr:\n%s",
					lines, "bridge: ", c.reason, stderr)
			}
		})
	}
}

// TestServePortInUse: `bridge serve` on an address that is taken exits
// non-zero at once with a message naming the address.
func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, flag := range []string{"--http", "--uwsgi"} {
		t.Run(strings.TrimPrefix(flag, "--"), func(t *testing.T) {
			start := time.Now()
			_, stderr, err := runBridge(t, "serve", "--runner", "python:app:application",
				"--chdir", appDir("flask_app"), flag, addr)
			if err == nil {
				t.Fatal("bridge serve exited 0 on a port in use")
			}
			lines := reasonLines(stderr)
			if len(lines) != 1 || !strings.Contains(lines[0], addr) || !strings.Contains(lines[0], "address already in use") {
				t.Errorf("stderr reason lines %q, want one line naming %s and 'address already in use'", lines, addr)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v to fail", took)
			}
		})
	}
}
