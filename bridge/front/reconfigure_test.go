package front_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"bridge/bridge/supervise"
)

// Fleet.ReloadWith (issue 15, swapping settings): under load, a reload
// that changes the worker count serves with the new count, and later
// plain reloads keep it; a Reconfigure that fails is a failed reload that
// leaves the running generation alone.
func TestReloadWithNewConfig(t *testing.T) {
	var ok, failed atomic.Int64
	s := startStackWith(t, 0, func(c *supervise.Config) {
		c.RecycleGrace = 5 * time.Second
		c.OnReload = func(good bool) {
			if good {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}
	})
	l := startLoad(s.httpURL+"/sleep?ms=5", "slept", 20, 0)
	current := func() int {
		n := 0
		gen := s.fleet.Generation()
		for _, st := range s.fleet.States() {
			if strings.HasPrefix(st.Name, "g"+strconv.Itoa(gen)+".") {
				n++
			}
		}
		return n
	}
	gen, err := s.fleet.ReloadWith(context.Background(), func(_ context.Context, cur supervise.Config) (supervise.Config, error) {
		cur.Workers = 3
		return cur, nil
	})
	if err != nil || gen != 2 || current() != 3 {
		t.Fatalf("reload to 3 workers: generation %d, %d workers, %v", gen, current(), err)
	}
	bad := errors.New("bridge.yaml:3: unknown key")
	if gen, err := s.fleet.ReloadWith(context.Background(), func(_ context.Context, cur supervise.Config) (supervise.Config, error) {
		return supervise.Config{}, bad
	}); !errors.Is(err, bad) || gen != 2 || s.fleet.Generation() != 2 || current() != 3 {
		t.Fatalf("failed reconfigure: generation %d (serving %d), %d workers, %v", gen, s.fleet.Generation(), current(), err)
	}
	if gen, err := s.fleet.Reload(context.Background()); err != nil || gen != 3 || current() != 3 {
		t.Fatalf("plain reload after: generation %d, %d workers, %v", gen, current(), err)
	}
	l.finish()
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Fatalf("%v\n%s", l, s.logs.String())
	}
	if ok.Load() != 2 || failed.Load() != 1 || !strings.Contains(s.logs.String(), "unknown key") {
		t.Fatalf("reloads counted: %d ok, %d failed; log:\n%s", ok.Load(), failed.Load(), s.logs.String())
	}
}
