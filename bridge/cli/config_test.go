package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func parseServe(args ...string) (*options, error) {
	o := &options{}
	return o, parseFlags("serve", o, true, args, io.Discard)
}

// Command line > environment > config file > default, flag by flag.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `
workers: 3
threads: 5
timeout: 10s
grace: 7s
max-body-size: 512M
`)
	t.Setenv("BRIDGE_THREADS", "6")
	t.Setenv("BRIDGE_TIMEOUT", "20s")
	o, err := parseServe("--config", path, "--timeout", "30s")
	if err != nil {
		t.Fatal(err)
	}
	if o.workers != 3 || o.threads != 6 || o.timeout != 30*time.Second || o.grace != 7*time.Second ||
		o.maxBody != 512<<20 || o.backlog != 1024 {
		t.Errorf("workers %d (file 3), threads %d (env 6), timeout %v (flag 30s), grace %v (file 7s), max-body-size %d (file 512M), backlog %d (default 1024)",
			o.workers, o.threads, o.timeout, o.grace, o.maxBody, o.backlog)
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("BRIDGE_CONFIG", writeConfig(t, "workers: 9\n"))
	o, err := parseServe()
	if err != nil || o.workers != 9 {
		t.Fatalf("workers %d, err %v", o.workers, err)
	}
}

// Repeatable flags take a list or a single value; a flag given on the command
// line replaces the file's list instead of adding to it.
func TestConfigLists(t *testing.T) {
	path := writeConfig(t, `
uwsgi: [unix:/run/a.sock, unix:/run/b.sock]
http: 127.0.0.1:8000
`)
	o, err := parseServe("--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.uwsgi, []string{"unix:/run/a.sock", "unix:/run/b.sock"}) || !slices.Equal(o.http, []string{"127.0.0.1:8000"}) {
		t.Errorf("uwsgi %q, http %q", o.uwsgi, o.http)
	}
	o, err = parseServe("--config", path, "--uwsgi", "unix:/run/c.sock")
	if err != nil || !slices.Equal(o.uwsgi, []string{"unix:/run/c.sock"}) {
		t.Errorf("uwsgi %q, err %v", o.uwsgi, err)
	}
}

func TestConfigEmptyFile(t *testing.T) {
	o, err := parseServe("--config", writeConfig(t, "# nothing yet\n"))
	if err != nil || o.workers != 2 {
		t.Fatalf("workers %d, err %v", o.workers, err)
	}
}

// Every mistake is one usage line that names the file, the line and the key.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", "workers: 2\nwokers: 4\n", `:2: unknown key "wokers" (did you mean "workers"?)`},
		{"underscores", "max_body_size: 1M\n", `:1: unknown key "max_body_size" (did you mean "max-body-size"?)`},
		{"no suggestion", "\n\nport: 80\n", `:3: unknown key "port"`},
		{"bad number", "runner: python:app\nworkers: four\n", `:2: workers: "four": want a whole number`},
		{"bad duration", "timeout: 30\n", `:1: timeout: "30": want a duration such as 30s`},
		{"bad size", "max-body-size: lots\n", `:1: max-body-size: "lots": want a byte size`},
		{"bad list item", "uwsgi:\n  - unix:/a\n  - [unix:/b]\n", `:3: uwsgi: list items must be plain values`},
		{"list for one value", "workers: [1, 2]\n", `:1: workers: takes one value, not a list`},
		{"mapping", "runner:\n  python: app\n", `:2: runner: want a value, not a mapping`},
		{"no value", "workers:\n", `:1: workers: no value`},
		{"twice", "workers: 1\nthreads: 1\nworkers: 2\n", `:3: workers: given twice (first on line 1)`},
		{"nested config", "config: other.yaml\n", `:1: config: a config file cannot name another one`},
		{"not a mapping", "- workers\n", `:1: want flag names and values`},
		{"yaml syntax", "workers: 1\n  threads: 2\n", `:2: mapping values are not allowed`},
		// A value the command line overrides is still checked.
		{"overridden", "threads: x\n", `:1: threads: "x": want a whole number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := parseServe("--config", path, "--threads", "2")
			if err == nil || ExitCode(err) != 2 {
				t.Fatalf("got %v (exit %d), want a usage error", err, ExitCode(err))
			}
			if msg := err.Error(); !strings.HasPrefix(msg, path+":") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("got  %q\nwant %q after %s", msg, tc.want, path)
			}
		})
	}
	_, err := parseServe("--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// The example in deploy/ stays a valid serve configuration.
func TestConfigExample(t *testing.T) {
	o, err := parseServe("--config", "../../deploy/bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(o); err != nil {
		t.Fatal(err)
	}
	if o.runner != "python:app:application" || o.workers != 4 || len(o.uwsgi) != 1 || o.socketMode != "0660" {
		t.Errorf("runner %q, workers %d, uwsgi %q, socket-mode %q", o.runner, o.workers, o.uwsgi, o.socketMode)
	}
}

// check --config accepts serve's keys, rejects what serve would reject, and
// then loads the app as usual.
func TestCheckValidatesConfig(t *testing.T) {
	t.Setenv("BRIDGE_CACHE_DIR", t.TempDir())
	demo, err := filepath.Abs("../../deploy/demo")
	if err != nil {
		t.Fatal(err)
	}
	base := "runner: python:app:application\nchdir: " + demo + "\ntimeout: 10s\n"
	for _, tc := range []struct{ name, extra, want string }{
		{"public uwsgi", "uwsgi: 0.0.0.0:9000\n", "--uwsgi 0.0.0.0:9000: the uwsgi listener trusts"},
		{"no listener", "", "no listener"},
		{"zero workers", "uwsgi: unix:/run/a.sock\nworkers: 0\n", "--workers 0: must be at least 1"},
		{"bad log format", "uwsgi: unix:/run/a.sock\nlog-format: text\n", `log format "text"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), []string{"check", "--config", writeConfig(t, base+tc.extra)}, io.Discard, io.Discard)
			if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
	t.Run("zero workers from env", func(t *testing.T) {
		t.Setenv("BRIDGE_WORKERS", "0")
		err := Run(context.Background(), []string{"check", "--config", writeConfig(t, base+"uwsgi: unix:/run/a.sock\n")}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--workers 0: must be at least 1") {
			t.Fatalf("got %v", err)
		}
	})
	var out bytes.Buffer
	err = Run(context.Background(), []string{"check", "--config", writeConfig(t, base+"uwsgi: [unix:/run/a.sock]\nadmin: 127.0.0.1:9100\nworkers: 4\nthreads: 2\n")}, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "ok: app:application loaded") {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
}
