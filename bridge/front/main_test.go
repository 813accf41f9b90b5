package front_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
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
	counted   *statusCounts // what the metrics hook saw
}

// statusCounts records the statuses the Handler's metrics hook reports.
type statusCounts struct {
	mu       sync.Mutex
	inFlight int
	byStatus map[int]int
}

func (c *statusCounts) begin() func(string, int, time.Duration) {
	c.mu.Lock()
	c.inFlight++
	c.mu.Unlock()
	return func(_ string, status int, _ time.Duration) {
		c.mu.Lock()
		c.inFlight--
		c.byStatus[status]++
		c.mu.Unlock()
	}
}

func (c *statusCounts) get(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byStatus[status]
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
	lim := front.DefaultLimits()
	lim.Timeout, lim.MaxBody = timeout, 8<<20
	return startStackLimits(t, lim, pool, tune)
}

// startStackLimits is the whole stack with the fronts' limits given.
func startStackLimits(t testing.TB, lim front.Limits, pool *dispatch.Pool, tune func(*supervise.Config)) *stack {
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
	counted := &statusCounts{byStatus: map[int]int{}}
	h := &front.Handler{Pool: pool, Log: log, Runner: "exec:testrunner", Limits: lim, Begin: counted.begin}
	fc := front.Config{Handler: h, ServerName: "testhost", Modifiers: runners.AppModifiers(), Socket: front.ListenConfig{Mode: 0o600}}
	hf, uf := front.Kinds["http"](fc), front.Kinds["uwsgi"](fc)

	hl, err := hf.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hf.Serve(hl)
	ul, err := uf.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "u.sock")
	us, err := uf.Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	go uf.Serve(ul)
	go uf.Serve(us)

	t.Cleanup(func() {
		hl.Close()
		ul.Close()
		us.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		hf.Drain(ctx)
		uf.Drain(ctx)
		cancel()
		fleet.Stop(time.Second)
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	})
	return &stack{httpURL: "http://" + hl.Addr().String(), uwsgiTCP: ul.Addr().String(), uwsgiSock: sock, logs: logs, fleet: fleet, pool: pool, counted: counted}
}

var client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}

// dialFront opens a raw connection to either front (the uwsgi socket or
// the HTTP listener), with a deadline so that no test can hang on it.
func dialFront(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}
