package front_test

import (
	"sync/atomic"
	"testing"
	"time"

	"bridge/bridge/supervise"
)

// --max-requests (docs/design.md "Supervision"): workers are recycled under load,
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

	l := startLoad(s.httpURL+"/sleep?ms=5", "slept", 8, 60)
	l.wait()
	// Recycling happens on the supervisor's tick; give the last one time.
	deadline := time.Now().Add(5 * time.Second)
	for recycled.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%v, recycled %d", l, recycled.Load())
	if l.failed.Load() != 0 || l.ok.Load() != 480 {
		t.Fatalf("%v: recycling lost requests\n%s", l, s.logs.String())
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

	l := startLoad(s.httpURL+"/hello", "hello world\n", 4, 0)
	time.Sleep(1500 * time.Millisecond)
	l.finish()
	// A replacement takes a while to start on a loaded machine (or with
	// -race): wait for the recycles in progress to finish.
	deadline := time.Now().Add(10 * time.Second)
	for recycled.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%v, recycled %d", l, recycled.Load())
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Fatalf("%v\n%s", l, s.logs.String())
	}
	if recycled.Load() < 2 {
		t.Fatalf("only %d lifetime recycles in 1.5 s with a 300 ms lifetime", recycled.Load())
	}
}
