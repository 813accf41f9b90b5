package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"
)

// chaos sends the random reloads and runner kills and records them.
type chaos struct {
	mu     sync.Mutex
	events []event
}

func (c *chaos) add(e event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

// list returns the events so far, by time.
func (c *chaos) list() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]event(nil), c.events...)
	sortEvents(out)
	return out
}

// loop waits a random time in [lo, hi], then does act to a random bridge,
// until ctx ends.
func (c *chaos) loop(ctx context.Context, targets []*target, lo, hi time.Duration, seed uint64,
	act func(*target) event) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	for {
		wait := lo
		if hi > lo {
			wait += time.Duration(rng.Int64N(int64(hi - lo)))
		}
		sleepCtx(ctx, wait)
		if ctx.Err() != nil {
			return
		}
		c.add(act(targets[rng.IntN(len(targets))]))
	}
}

// reload sends SIGHUP to a bridge: a new generation of workers.
func reload(t *target) event {
	e := event{At: time.Now(), Runner: t.name, Kind: "reload", PID: t.proc.pid()}
	if err := syscall.Kill(e.PID, syscall.SIGHUP); err != nil {
		e.Note, e.PID = err.Error(), 0
	}
	return e
}

// killRunner SIGKILLs one of a bridge's runner processes (its children),
// chosen at random.
func killRunner(rng *rand.Rand) func(t *target) event {
	return func(t *target) event {
		kids := children(t.proc.pid())
		if len(kids) == 0 {
			return event{At: time.Now(), Runner: t.name, Kind: "kill", Note: "no runner process found"}
		}
		k := kids[rng.IntN(len(kids))]
		e := event{At: time.Now(), Runner: t.name, Kind: "kill", PID: k.PID,
			Note: fmt.Sprintf("1 of %d runner processes", len(kids))}
		if err := syscall.Kill(k.PID, syscall.SIGKILL); err != nil {
			e.Note, e.PID = err.Error(), 0
			return e
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
			if !same(k) {
				e.Gone = time.Now()
				break
			}
			time.Sleep(time.Millisecond)
		}
		return e
	}
}
