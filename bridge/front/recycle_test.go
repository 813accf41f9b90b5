package front_test

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"bridge/bridge/supervise"
)

// --max-requests (DESIGN "Supervision"): workers are recycled under load,
// each replacement ready before the old one drains, and no request fails.
func TestMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	var recycled atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.MaxRequests, c.MaxRequestsJitter, c.RecycleGrace = 40, 10, 5*time.Second
		c.OnRestart = func(reason string) {
			if reason == "max-requests" {
				recycled.Add(1)
			}
		}
	})

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				resp, err := client.Get(s.httpURL + "/sleep?ms=5")
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
		t.Fatalf("ok %d, failed %d: recycling lost requests\n%s", ok.Load(), failed.Load(), s.logs.String())
	}
	// 480 requests over 2 workers with limits of 40–50: at least 3 recycles.
	if recycled.Load() < 3 {
		t.Fatalf("only %d recycles", recycled.Load())
	}
}

// --max-lifetime: workers are replaced as they age, with no failed request.
func TestMaxLifetimeRecyclesWithoutFailures(t *testing.T) {
	var recycled atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.Workers, c.MaxLifetime, c.RecycleGrace = 1, 300*time.Millisecond, 5*time.Second
		c.OnRestart = func(reason string) {
			if reason == "max-lifetime" {
				recycled.Add(1)
			}
		}
	})

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(1500 * time.Millisecond)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := client.Get(s.httpURL + "/hello")
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
		t.Fatalf("ok %d, failed %d\n%s", ok.Load(), failed.Load(), s.logs.String())
	}
	if recycled.Load() < 2 {
		t.Fatalf("only %d lifetime recycles in 1.5 s with a 300 ms lifetime", recycled.Load())
	}
}
