package front_test

import (
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	"bridge/bridge/front"
	"bridge/bridge/supervise"
	"bridge/bridge/testrunner"
)

// --max-requests (DESIGN "Supervision"): workers are recycled under load,
// each replacement ready before the old one drains, and no request fails.
func TestMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	pool := dispatch.NewPool(256, 10*time.Second)
	var recycled atomic.Int64
	sup := supervise.New(supervise.Config{
		Command: supervise.Command{Path: os.Args[0], Env: []string{testrunner.EnvVar + "=1"}},
		Runner:  "exec:testrunner", Workers: 2, Threads: 2, StartTimeout: 20 * time.Second, Log: log,
		MaxRequests: 40, MaxRequestsJitter: 10, RecycleGrace: 5 * time.Second,
		OnRestart: func(reason string) {
			if reason == "max-requests" {
				recycled.Add(1)
			}
		},
	}, pool)
	if err := sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sup.Stop(time.Second)
	h := &front.Handler{Pool: pool, Log: log, Runner: "exec:testrunner", MaxBody: 1 << 20}
	ln, err := front.Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := front.NewHTTPServer(&front.HTTP{H: h}, nil)
	go srv.Serve(ln)
	defer srv.Close()

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				resp, err := client.Get("http://" + ln.Addr().String() + "/sleep?ms=5")
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && string(b) == "slept" {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Recycling happens on the supervisor's tick; give the last one time.
	deadline := time.Now().Add(5 * time.Second)
	for recycled.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ok %d, failed %d, recycled %d", ok.Load(), failed.Load(), recycled.Load())
	if failed.Load() != 0 || ok.Load() != 480 {
		t.Fatalf("ok %d, failed %d: recycling lost requests\n%s", ok.Load(), failed.Load(), logs.String())
	}
	// 480 requests over 2 workers with limits of 40–50: at least 3 recycles.
	if recycled.Load() < 3 {
		t.Fatalf("only %d recycles", recycled.Load())
	}
}

// --max-lifetime: workers are replaced as they age, with no failed request.
func TestMaxLifetimeRecyclesWithoutFailures(t *testing.T) {
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	pool := dispatch.NewPool(256, 10*time.Second)
	var recycled atomic.Int64
	sup := supervise.New(supervise.Config{
		Command: supervise.Command{Path: os.Args[0], Env: []string{testrunner.EnvVar + "=1"}},
		Runner:  "exec:testrunner", Workers: 1, Threads: 2, StartTimeout: 20 * time.Second, Log: log,
		MaxLifetime: 300 * time.Millisecond, RecycleGrace: 5 * time.Second,
		OnRestart: func(reason string) {
			if reason == "max-lifetime" {
				recycled.Add(1)
			}
		},
	}, pool)
	if err := sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sup.Stop(time.Second)
	h := &front.Handler{Pool: pool, Log: log, Runner: "exec:testrunner", MaxBody: 1 << 20}
	ln, err := front.Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := front.NewHTTPServer(&front.HTTP{H: h}, nil)
	go srv.Serve(ln)
	defer srv.Close()

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(1500 * time.Millisecond)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := client.Get("http://" + ln.Addr().String() + "/hello")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("ok %d, failed %d, recycled %d", ok.Load(), failed.Load(), recycled.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("ok %d, failed %d\n%s", ok.Load(), failed.Load(), logs.String())
	}
	if recycled.Load() < 2 {
		t.Fatalf("only %d lifetime recycles in 1.5 s with a 300 ms lifetime", recycled.Load())
	}
}
