package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"bridge/bridge/admin"
)

// readiness is a worker pool whose readiness the test sets.
type readiness struct{ ready atomic.Bool }

func (r *readiness) Ready() bool { return r.ready.Load() }

// adminOn serves bridge's real admin endpoints on ln until the test ends.
func adminOn(t *testing.T, ln net.Listener) (*readiness, *admin.Server) {
	t.Helper()
	r := &readiness{}
	adm := admin.New(r, nil)
	srv := &http.Server{Handler: adm.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r, adm
}

// runHealthcheck runs `bridge healthcheck ARGS` and returns its exit code,
// stdout and the error line main would print.
func runHealthcheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), append([]string{"healthcheck"}, args...), &out, &errOut)
	if err == nil {
		return 0, out.String(), ""
	}
	return ExitCode(err), out.String(), err.Error()
}

func TestHealthcheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, adm := adminOn(t, ln)
	addr := ln.Addr().String()

	// Not ready: no worker yet. Exit 1, the reason bridge gave.
	code, _, msg := runHealthcheck(t, "--admin", addr)
	if code != 1 || !strings.Contains(msg, "not ready") || !strings.Contains(msg, "503") || !strings.Contains(msg, "no ready worker") {
		t.Fatalf("no ready worker: exit %d, %q; want 1 and the 503's reason", code, msg)
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("reason is not one line: %q", msg)
	}

	r.ready.Store(true)
	if code, out, msg := runHealthcheck(t, "--admin", addr); code != 0 || out != "ready\n" {
		t.Fatalf("ready: exit %d, stdout %q, error %q; want 0", code, out, msg)
	}
	// An unspecified host is asked on loopback, as a container's own probe
	// must.
	_, port, _ := net.SplitHostPort(addr)
	if code, _, msg := runHealthcheck(t, "--admin", ":"+port); code != 0 {
		t.Fatalf("--admin :%s: exit %d, %q; want 0", port, code, msg)
	}
	if code, _, msg := runHealthcheck(t, "--admin", "0.0.0.0:"+port); code != 0 {
		t.Fatalf("--admin 0.0.0.0:%s: exit %d, %q; want 0", port, code, msg)
	}

	// The address from $BRIDGE_ADMIN, and from the config file serve reads.
	t.Setenv("BRIDGE_ADMIN", addr)
	if code, _, msg := runHealthcheck(t); code != 0 {
		t.Fatalf("BRIDGE_ADMIN: exit %d, %q; want 0", code, msg)
	}
	os.Unsetenv("BRIDGE_ADMIN")
	cfg := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := os.WriteFile(cfg, []byte("runner: python:app\nuwsgi: fd:uwsgi\nworkers: 4\nadmin: "+addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, msg := runHealthcheck(t, "--config", cfg); code != 0 {
		t.Fatalf("--config with admin: exit %d, %q; want 0", code, msg)
	}

	// Draining (after SIGTERM): not ready.
	adm.Drain()
	if code, _, msg := runHealthcheck(t, "--admin", addr); code != 1 || !strings.Contains(msg, "draining") {
		t.Fatalf("draining: exit %d, %q; want 1, draining", code, msg)
	}
}

func TestHealthcheckUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := adminOn(t, ln)
	r.ready.Store(true)
	if code, _, msg := runHealthcheck(t, "--admin", "unix:"+sock); code != 0 {
		t.Fatalf("unix admin socket: exit %d, %q; want 0", code, msg)
	}
}

// Every failure exits 1 (container runtimes reserve 2) with one line that
// says what is wrong.
func TestHealthcheckFailures(t *testing.T) {
	// Nothing listening: a port that was free a moment ago.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()

	// A listener that accepts and never answers: the timeout fires.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()

	cfg := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := os.WriteFile(cfg, []byte("workers: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BRIDGE_ADMIN", "") // an empty value is no address
	os.Unsetenv("BRIDGE_ADMIN")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--admin", free}, "connection refused"},
		{[]string{"--admin", mute.Addr().String(), "--probe-timeout", "200ms"}, "no answer within 200ms"},
		{[]string{"--admin", "nonsense"}, `want host:port or unix:/path`},
		{[]string{"--admin", "unix:"}, "empty socket path"},
		{[]string{"--admin", "unix:/nonexistent/admin.sock"}, "no such file"},
		{[]string{"--admin", "fd:admin"}, "give --admin with its address"},
		{[]string{"--config", cfg}, "no admin address"},
		{[]string{}, "no admin address"},
		{[]string{"--admin", free, "--probe-timeout", "0s"}, "must be more than 0"},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"--config", "/nonexistent.yaml"}, "--config"},
	} {
		code, _, msg := runHealthcheck(t, c.args...)
		if code != 1 || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("healthcheck %q: exit %d, %q; want exit 1 and one line with %q", c.args, code, msg, c.want)
		}
	}

	var out, errOut bytes.Buffer
	err = Run(context.Background(), []string{"healthcheck", "-h"}, &out, &errOut)
	if !errors.Is(err, flag.ErrHelp) || ExitCode(err) != 0 || !strings.Contains(errOut.String(), "HEALTHCHECK") {
		t.Fatalf("healthcheck -h: %v, help %q", err, errOut.String())
	}
}
