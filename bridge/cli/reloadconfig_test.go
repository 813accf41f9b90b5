package cli

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A reload applies the worker generation's settings and names every other
// changed one as needing a restart (issue 15).
func TestNeedRestart(t *testing.T) {
	running, err := parseServe("--config", writeConfig(t, `
runner: python:a:app
chdir: /srv/a
workers: 2
http: 127.0.0.1:8000
log-level: info
timeout: 60s
`))
	if err != nil {
		t.Fatal(err)
	}
	next, err := parseServe("--config", writeConfig(t, `
runner: python:b:app
chdir: /srv/b
workers: 4
threads: 3
env: [A=1]
interpreter: /opt/py/bin/python3
max-rss: 1G
http: [127.0.0.1:8000, 127.0.0.1:8001]
log-level: debug
timeout: 30s
socket-mode: "0600"
`))
	if err != nil {
		t.Fatal(err)
	}
	got := needRestart(settingsOf(running), settingsOf(next))
	want := []string{"http", "log-level", "socket-mode", "timeout"}
	if !slices.Equal(got, want) {
		t.Errorf("needRestart = %v, want %v", got, want)
	}
	if got := needRestart(settingsOf(running), settingsOf(running)); len(got) != 0 {
		t.Errorf("no change, yet needRestart = %v", got)
	}
}

// keepRunning takes from the new settings exactly the keys of reloadable:
// its field-by-field copy and the list of names cannot drift apart.
func TestKeepRunningMatchesReloadable(t *testing.T) {
	running, err := parseServe("--http", "127.0.0.1:8000")
	if err != nil {
		t.Fatal(err)
	}
	// Every setting different from running's.
	next, err := parseServe("--config", writeConfig(t, `
runner: exec:other
chdir: /tmp
interpreter: /usr/bin/python3
env: [A=1]
workers: 5
threads: 6
pipeline: 7
start-timeout: 9s
max-requests: 10
max-requests-jitter: 11
max-lifetime: 12h
max-rss: 13M
cancel-grace: 14s
http: 127.0.0.1:9000
uwsgi: unix:/tmp/x.sock
admin: 127.0.0.1:9001
admin-reload: true
socket-mode: "0600"
server-name: example.org
timeout: 15s
max-connections: 16
grace: 17s
backlog: 18
queue-timeout: 19s
max-body-size: 20M
header-timeout: 21s
body-timeout: 22s
write-timeout: 23s
max-headers: 24
max-header-size: 25K
log-format: console
log-level: debug
`))
	if err != nil {
		t.Fatal(err)
	}
	was, offered := settingsOf(running), settingsOf(next)
	keepRunning(next, running)
	got := settingsOf(next)
	for name, v := range got {
		switch {
		case name == "config" || name == "admin-token-file" || name == "socket-group":
			// The same in both: the file itself; settings this test cannot
			// give without a token file or a group.
		case offered[name] == was[name]:
			t.Errorf("%s: the test gives the same value to both sides (%q)", name, v)
		case reloadable[name] && v != offered[name]:
			t.Errorf("%s is reloadable, but keepRunning kept the running %q instead of %q", name, v, offered[name])
		case !reloadable[name] && v != was[name]:
			t.Errorf("%s needs a restart, but keepRunning took the new %q instead of the running %q", name, v, was[name])
		}
	}
}

// A reload reads the file again, and the command line still wins over it,
// as at start; a file that no longer validates fails the reload.
func TestReloadRereadsConfig(t *testing.T) {
	path := writeConfig(t, "runner: python:a:app\nhttp: 127.0.0.1:8000\nworkers: 2\nthreads: 2\n")
	args := []string{"--config", path, "--threads", "3"}
	r := &configReloader{ctx: context.Background(), args: args, log: zerolog.Nop()}
	if err := os.WriteFile(path, []byte("runner: python:b:app\nhttp: 127.0.0.1:8000\nworkers: 4\nthreads: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := r.reread()
	if err != nil {
		t.Fatal(err)
	}
	if o.runner != "python:b:app" || o.workers != 4 || o.threads != 3 {
		t.Errorf("runner %q workers %d threads %d, want python:b:app 4 3 (the flag wins over the file)", o.runner, o.workers, o.threads)
	}
	for text, wantErr := range map[string]string{
		"runner: python:b:app\nhttp: 127.0.0.1:8000\nworkers: [\n": "bridge.yaml:",
		"runner: python:b:app\nhttp: 127.0.0.1:8000\nworkrs: 4\n":  `unknown key "workrs" (did you mean "workers"?)`,
		"runner: python:b:app\nhttp: 127.0.0.1:8000\nworkers: 0\n": "--workers 0: must be at least 1",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.reread(); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want one with %q", text, err, wantErr)
		}
	}
}

func TestRunnerEnvChecked(t *testing.T) {
	for _, bad := range []string{"NOVALUE", "=x", "BRIDGE_WORKERS=3", "A B=1", "A=\x00"} {
		if err := checkRunnerEnv([]string{bad}); err == nil {
			t.Errorf("--env %q accepted", bad)
		}
	}
	if err := checkRunnerEnv([]string{"A=1", "B=", "C=x=y", "PYTHONPATH=/srv/lib"}); err != nil {
		t.Error(err)
	}
}

// --env reaches the runner's command, before bridge's own entries (which
// win); a PYTHONPATH from it follows the shim's directory instead of
// hiding it.
func TestRunnerEnvInCommand(t *testing.T) {
	o := &options{runner: "python:app:application", chdir: t.TempDir(), interpreter: "/usr/bin/python3",
		logLevel: "info", env: listFlag{"APP_MODE=blue", "PYTHONPATH=/srv/lib"}}
	cmd, err := runnerCommand(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Env[0] != "APP_MODE=blue" {
		t.Errorf("env %q: --env entries should come first", cmd.Env)
	}
	last := ""
	for _, kv := range cmd.Env {
		if v, ok := strings.CutPrefix(kv, "PYTHONPATH="); ok {
			last = v
		}
	}
	if !strings.HasSuffix(last, ":/srv/lib") || strings.HasPrefix(last, "/srv/lib") {
		t.Errorf("PYTHONPATH the runner gets: %q, want the shim's directory, then /srv/lib", last)
	}
}
