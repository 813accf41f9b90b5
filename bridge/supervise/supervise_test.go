package supervise_test

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/supervise"
	"bridge/bridge/testrunner"
)

func TestMain(m *testing.M) {
	testrunner.Main()
	os.Exit(m.Run())
}

func config(env ...string) supervise.Config {
	return supervise.Config{
		Command: supervise.Command{Path: os.Args[0], Env: append([]string{testrunner.EnvVar + "=1"}, env...)},
		Runner:  "exec:testrunner", Workers: 2, Threads: 3, StartTimeout: 20 * time.Second, Log: zerolog.Nop(),
	}
}

// G24: an app that cannot load stops start-up with the runner's own reason.
func TestStartFailureReportsRunnerReason(t *testing.T) {
	pool := dispatch.NewPool(1, time.Second)
	s := supervise.New(config(testrunner.FailEnvVar+"=cannot import module 'nope'"), pool)
	err := s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot import module 'nope'") {
		t.Fatalf("got %v", err)
	}
	if pool.Ready() {
		t.Fatal("pool ready after failed start")
	}
}

func TestStartFailureMissingExecutable(t *testing.T) {
	cfg := config()
	cfg.Command.Path = "/nonexistent/runner"
	err := supervise.New(cfg, dispatch.NewPool(1, time.Second)).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/runner") {
		t.Fatalf("got %v", err)
	}
}

func TestStartDescribeAndStop(t *testing.T) {
	pool := dispatch.NewPool(1, time.Second)
	s := supervise.New(config(), pool)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !pool.Ready() {
		t.Fatal("pool not ready")
	}
	info := s.Info()
	if info == nil || info.Threads != 3 || info.Pid == 0 {
		t.Fatalf("describe: %+v", info)
	}
	pid := int(info.Pid)
	s.Stop(time.Second)
	if pool.Ready() {
		t.Fatal("pool still ready after stop")
	}
	// The runner process is gone (signal 0 probes existence).
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Fatalf("runner %d still alive after Stop", pid)
	}
}

// A killed runner is replaced, and the replacement is reported.
func TestKilledWorkerIsReplacedAndReported(t *testing.T) {
	pool := dispatch.NewPool(1, time.Second)
	cfg := config()
	cfg.Workers = 1
	restarts := make(chan string, 4)
	cfg.OnRestart = func(reason string) { restarts <- reason }
	s := supervise.New(cfg, pool)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(time.Second)
	old := s.Info().Pid
	if err := syscall.Kill(int(old), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-restarts:
		if reason != "exited" {
			t.Errorf("reason %q", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no restart reported")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if info := s.Info(); info != nil && info.Pid != old && pool.Ready() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no replacement worker became ready")
}
