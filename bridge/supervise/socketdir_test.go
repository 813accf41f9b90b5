package supervise_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/supervise"
	"bridge/bridge/testrunner"
)

// Issue 14: each runner's gRPC socket is in a directory of its own that
// only bridge's user can enter (go-plugin makes it with os.MkdirTemp: 0700,
// whatever the umask), so no other local user can connect to a runner and
// send it requests around bridge; it is gone once the runner is stopped.
func TestRunnerSocketDirIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	p, err := supervise.StartProcess(context.Background(), supervise.ProcessConfig{
		Command: supervise.Command{Path: os.Args[0], Env: []string{testrunner.EnvVar + "=1"}},
		Name:    "w1", Threads: 1, Slots: 1, Workers: 1, StartTimeout: 20 * time.Second, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := p.Handshake()
	fields := strings.Split(strings.TrimSpace(line), "|")
	if len(fields) < 5 || fields[2] != "unix" {
		p.Kill()
		t.Fatalf("handshake %q: want a unix socket", line)
	}
	dir := filepath.Dir(fields[3])
	fi, err := os.Lstat(dir)
	if err != nil {
		p.Kill()
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || int(st.Uid) != os.Geteuid() {
		t.Errorf("runner socket directory %s: %v uid %d, want a 0700 directory of uid %d", dir, fi.Mode(), st.Uid, os.Geteuid())
	}
	p.Kill()
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("runner socket directory %s left after Kill: %v", dir, err)
	}
}
