package front_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/front"
	"bridge/bridge/supervise"
	"bridge/bridge/testrunner"
	"bridge/runners"
)

func TestMain(m *testing.M) {
	testrunner.Main() // exits when this binary was started as a runner
	os.Exit(m.Run())
}

// stack is bridge in-process: two test-runner workers behind both fronts.
type stack struct {
	httpURL   string
	uwsgiTCP  string
	uwsgiSock string
	logs      *syncBuffer
	fleet     *supervise.Fleet
	pool      *dispatch.Pool
}

func startStack(t testing.TB, timeout time.Duration) *stack {
	t.Helper()
	return startStackWith(t, timeout, nil)
}

// startStackWith is startStack with the supervisor's config adjusted by tune
// (recycling limits, callbacks) before the workers start.
func startStackWith(t testing.TB, timeout time.Duration, tune func(*supervise.Config)) *stack {
	t.Helper()
	return startStackPool(t, timeout, dispatch.NewPool(64, 5*time.Second), tune)
}

// startStackPool is startStackWith over a given pool (queue limits).
func startStackPool(t testing.TB, timeout time.Duration, pool *dispatch.Pool, tune func(*supervise.Config)) *stack {
	t.Helper()
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	cfg := supervise.Config{
		Command: supervise.Command{Path: os.Args[0], Env: []string{testrunner.EnvVar + "=1"}},
		Runner:  "exec:testrunner", Workers: 2, Threads: 2, StartTimeout: 20 * time.Second, Log: log,
	}
	if tune != nil {
		tune(&cfg)
	}
	fleet := supervise.NewFleet(cfg, pool)
	if err := fleet.Start(context.Background()); err != nil {
		t.Fatalf("start workers: %v", err)
	}
	h := &front.Handler{Pool: pool, Log: log, Runner: "exec:testrunner", Timeout: timeout, MaxBody: 8 << 20}

	hl, err := front.Listen("127.0.0.1:0", front.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := front.NewHTTPServer(&front.HTTP{H: h, ServerName: "testhost"}, nil)
	go srv.Serve(hl)

	ul, err := front.Listen("127.0.0.1:0", front.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "u.sock")
	us, err := front.Listen("unix:"+sock, front.ListenConfig{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	u := &front.Uwsgi{H: h, ServerName: "testhost", Modifiers: runners.AppModifiers()}
	go u.Serve(context.Background(), ul)
	go u.Serve(context.Background(), us)

	t.Cleanup(func() {
		srv.Close()
		ul.Close()
		us.Close()
		fleet.Stop(time.Second)
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	})
	return &stack{httpURL: "http://" + hl.Addr().String(), uwsgiTCP: ul.Addr().String(), uwsgiSock: sock, logs: logs, fleet: fleet, pool: pool}
}

var client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}

func dialUwsgi(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}
