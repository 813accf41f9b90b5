package supervise_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/supervise"
)

// script writes a shell-script runner to a temporary directory.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runner.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func startScript(t *testing.T, body string, cfg supervise.ProcessConfig) error {
	t.Helper()
	cfg.Command.Path = script(t, body)
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	cfg.Threads, cfg.Slots, cfg.Workers, cfg.Log = 1, 1, 1, zerolog.Nop()
	p, err := supervise.StartProcess(context.Background(), cfg)
	if err == nil {
		p.Kill()
		t.Fatal("the runner started")
	}
	return err
}

// A runner that fails its start gets one line saying what it did, not
// go-plugin's multi-line handshake message.
func TestStartErrorsAreOneClearLine(t *testing.T) {
	const logErr = `echo '{"level":"error","message":"boom: cannot load app.py"}' >&2`
	for _, tc := range []struct {
		name, body, want string
		timeout          time.Duration
	}{
		{"not a handshake", "echo 'hello from the app'; exec sleep 10",
			`: first line on stdout is not a go-plugin handshake (want 1|1|unix|/path.sock|grpc, got "hello from the app")`, 0},
		{"long garbage is escaped and cut at 80 bytes", "printf 'a\\033b%0100d\\n' 0; exec sleep 10",
			`: first line on stdout is not a go-plugin handshake (want 1|1|unix|/path.sock|grpc, got "a\x1bb` + strings.Repeat("0", 77) + `")`, 0},
		{"exit before the handshake", logErr + "; exit 3",
			" exited with status 3 before its handshake line: boom: cannot load app.py", 0},
		{"exit without a word", "exit 4", " exited with status 4 before its handshake line", 0},
		{"killed", "kill -9 $$", " was killed by signal killed before its handshake line", 0},
		{"the runner refuses the cookie", `[ "$BRIDGE_PLUGIN" = runner-v9 ] || { echo '{"level":"error","message":"runner.sh is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v9"}' >&2; exit 1; }`,
			" exited with status 1 before its handshake line: runner.sh is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v9", 0},
		{"no handshake in time", "exec sleep 10", " wrote no handshake line within --start-timeout (300ms)", 300 * time.Millisecond},
		{"netrpc", `echo "1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/x.sock|netrpc"; exec sleep 10`,
			`: handshake names protocol "netrpc"; bridge runners speak grpc`, 0},
		{"no protocol field", `echo "1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/x.sock"; exec sleep 10`,
			`: handshake names protocol "netrpc"; bridge runners speak grpc`, 0},
		{"runner protocol 2", `echo "1|2|unix|$PLUGIN_UNIX_SOCKET_DIR/x.sock|grpc"; exec sleep 10`,
			`: handshake names runner protocol version "2"; bridge speaks 1 (PLUGIN_PROTOCOL_VERSIONS=1)`, 0},
		{"core protocol 2", `echo "2|1|unix|$PLUGIN_UNIX_SOCKET_DIR/x.sock|grpc"; exec sleep 10`,
			`: handshake speaks go-plugin core protocol "2"; bridge speaks 1`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := startScript(t, tc.body, supervise.ProcessConfig{StartTimeout: tc.timeout})
			msg := err.Error()
			if !strings.HasPrefix(msg, "runner /") || !strings.Contains(msg, "runner.sh"+tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("got  %s\nwant runner …/runner.sh%s", msg, tc.want)
			}
		})
	}
}

// The runner always gets BRIDGE_GRACE as a Go duration: --grace, or 30s;
// bridge's own BRIDGE_GRACE setting never reaches it as it is.
func TestRunnerGetsGrace(t *testing.T) {
	t.Setenv("BRIDGE_GRACE", "bogus")
	body := `echo "{\"level\":\"error\",\"message\":\"grace=$BRIDGE_GRACE\"}" >&2; exit 1`
	for grace, want := range map[time.Duration]string{90 * time.Second: "grace=1m30s", 500 * time.Millisecond: "grace=500ms", 0: "grace=30s"} {
		err := startScript(t, body, supervise.ProcessConfig{Grace: grace})
		if !strings.HasSuffix(err.Error(), ": "+want) {
			t.Errorf("Grace %v: got %v, want %s", grace, err, want)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A runner that offers fewer slots than asked is said once per generation
// at info, not once per worker. The test runner leaves Describe.slots at 0:
// one stream per thread.
func TestFewerSlotsLoggedOnce(t *testing.T) {
	logs := &syncBuf{}
	cfg := config()
	cfg.Pipeline, cfg.Log = 4, zerolog.New(logs)
	s := supervise.New(cfg, dispatch.NewPool(1, time.Second))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Stop(time.Second)
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "Slot streams per worker") {
			lines = append(lines, l)
		}
	}
	want := `"level":"info","runner":"exec:testrunner","asked":7,"slots":3,"message":"the runner offers 3 Slot streams per worker of the 7 asked for (--threads + --pipeline); bridge opens 3"`
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("got %q, want one line with %s", lines, want)
	}
}
