// Package dispatch hands requests to runner slots: one pool of slots across
// all ready workers, a bounded FIFO of waiting requests, and the frame
// exchange on a slot's gRPC stream.
package dispatch

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"bridge/bridge/request"
)

// Pool is the set of free slots of all ready workers plus the requests
// waiting for one. A released slot goes straight to the oldest waiter, so
// waiting is first come, first served.
type Pool struct {
	mu           sync.Mutex
	workers      []*Worker
	waiters      []chan *Slot
	backlog      int
	queueTimeout time.Duration
	turn         int // where the next tie-break starts
}

// NewPool makes a pool whose queue holds at most backlog waiting requests for
// at most queueTimeout each (0: until the request's own deadline).
func NewPool(backlog int, queueTimeout time.Duration) *Pool {
	return &Pool{backlog: backlog, queueTimeout: queueTimeout}
}

// ErrNoWorkers is returned when no worker is ready and none can take the
// request before it gives up waiting.
var ErrNoWorkers = errors.New("no ready worker")

// Add makes w's slots available. Waiting requests get them first.
func (p *Pool) Add(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.workers = append(p.workers, w)
	w.pool = p
	for _, s := range w.slots {
		w.free = append(w.free, s)
	}
	var now time.Time
	for len(p.waiters) > 0 && len(w.free) > 0 && w.takes(&now, w.busy) {
		s := w.free[len(w.free)-1]
		w.free = w.free[:len(w.free)-1]
		w.busy++
		p.handToWaiter(s, &now)
	}
}

// Remove takes w out of dispatch. Requests running on it finish (or fail, if
// the process is gone); its slots are not handed out again.
func (p *Pool) Remove(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.workers {
		if x == w {
			p.workers = append(p.workers[:i], p.workers[i+1:]...)
			break
		}
	}
	w.removed = true
	w.free = nil
}

// suspend stops handing out w's slots until Resume: its runner looked dead
// and the supervisor is checking it.
func (p *Pool) suspend(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.suspended = true
}

// Resume makes a suspended worker's free slots available again (its runner
// turned out to be alive).
func (p *Pool) Resume(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.suspended || w.removed {
		return
	}
	w.suspended = false
	var now time.Time
	for len(p.waiters) > 0 && len(w.free) > 0 && w.takes(&now, w.busy) {
		s := w.free[len(w.free)-1]
		w.free = w.free[:len(w.free)-1]
		w.busy++
		p.handToWaiter(s, &now)
	}
}

// Ready reports whether at least one worker takes requests.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers) > 0
}

// Acquire takes a free slot of the least-loaded worker, waiting in the queue
// if there is none. A full queue or a wait past the queue timeout is a 503.
func (p *Pool) Acquire(ctx context.Context) (*Slot, error) {
	p.mu.Lock()
	if s := p.pickLocked(); s != nil {
		p.mu.Unlock()
		return s, nil
	}
	if len(p.waiters) >= p.backlog {
		p.mu.Unlock()
		return nil, request.Errorf(http.StatusServiceUnavailable, "queue full", ErrNoWorkers)
	}
	ch := make(chan *Slot, 1)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()

	var timeout <-chan time.Time
	if p.queueTimeout > 0 {
		t := time.NewTimer(p.queueTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case s := <-ch:
		return s, nil
	case <-ctx.Done():
		return nil, p.giveUp(ch, ctx.Err())
	case <-timeout:
		return nil, p.giveUp(ch, request.Errorf(http.StatusServiceUnavailable, "queue timeout", ErrNoWorkers))
	}
}

// giveUp leaves the queue; a slot handed over in the meantime goes back.
func (p *Pool) giveUp(ch chan *Slot, err error) error {
	p.mu.Lock()
	for i, c := range p.waiters {
		if c == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return err
		}
	}
	p.mu.Unlock()
	p.Release(<-ch) // already handed to us
	return err
}

// Release returns a slot after its request is done.
func (p *Pool) Release(s *Slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := s.worker
	s.since = time.Time{}
	w.served++
	if w.served == w.RecycleAfter && w.OnBroken != nil {
		w.OnBroken() // non-blocking: wakes the supervisor
	}
	if w.removed {
		w.busy--
		return
	}
	if id := s.abandoned; id != "" {
		// The app may still be inside the cancelled request: the slot comes
		// back only once the runner has let go of it.
		s.abandoned = ""
		w.busy--
		go w.awaitLetGo(s, id, s.stuckAt)
		return
	}
	var now time.Time
	if len(p.waiters) > 0 && !w.suspended && w.takes(&now, w.busy-1) {
		p.handToWaiter(s, &now)
		return
	}
	w.busy--
	w.free = append(w.free, s)
}

// gone reports whether w has left dispatch for good.
func (p *Pool) gone(w *Worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.removed
}

// reinstate returns a slot that was held back after a cancelled request.
func (p *Pool) reinstate(s *Slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := s.worker
	if w.removed {
		return
	}
	var now time.Time
	if len(p.waiters) > 0 && !w.suspended && w.takes(&now, w.busy) {
		w.busy++
		p.handToWaiter(s, &now)
		return
	}
	w.free = append(w.free, s)
}

// Waiting returns the number of requests queued for a slot.
func (p *Pool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}

// ReadyWorkers returns the number of workers taking requests.
func (p *Pool) ReadyWorkers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, w := range p.workers {
		if !w.suspended {
			n++
		}
	}
	return n
}

// Served returns the number of requests w has finished.
func (p *Pool) Served(w *Worker) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.served
}

// Busy returns the number of slots in use on w.
func (p *Pool) Busy(w *Worker) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.busy
}

func (p *Pool) handToWaiter(s *Slot, now *time.Time) {
	ch := p.waiters[0]
	p.waiters = p.waiters[1:]
	s.since = clock(now)
	ch <- s
}

// clock returns *now, reading the clock first if it is still zero: one
// reading serves a whole pass under the pool's mutex, and none is taken on
// paths that do not need it (a Release with nobody waiting).
func clock(now *time.Time) time.Time {
	if now.IsZero() {
		*now = time.Now()
	}
	return *now
}

// pipelineMaxAge bounds how long a request may have been running on a worker
// whose threads are all busy for that worker to still get pipelined
// requests: they would wait behind it, and one slow request must not hold
// back others that another worker could serve as soon as it is free.
const pipelineMaxAge = 50 * time.Millisecond

// takes reports whether w, with busy slots in use, may be handed one more
// request: always while it has a free app thread; past that (the request
// would wait its turn inside the runner) only while its oldest request is
// young. Called with the pool's mutex held; reads the clock (see clock)
// only past the threads.
func (w *Worker) takes(now *time.Time, busy int) bool {
	if busy < w.threads {
		return true
	}
	t := clock(now)
	for _, s := range w.slots {
		if !s.since.IsZero() && t.Sub(s.since) >= pipelineMaxAge {
			return false
		}
	}
	return true
}

// pickLocked returns a free slot of the worker with the fewest busy slots.
// Ties go round the workers, and a worker's slots are used in turn (the one
// free longest first): every slot sees traffic, so a shim that finishes
// work when its slot's next request arrives (closing a file body it sent as
// a File frame) is never left waiting behind busier slots.
func (p *Pool) pickLocked() *Slot {
	var best *Worker
	var now time.Time
	n := len(p.workers)
	for i := range n {
		w := p.workers[(p.turn+i)%n]
		if len(w.free) == 0 || w.suspended || (best != nil && w.busy >= best.busy) || !w.takes(&now, w.busy) {
			continue
		}
		best = w
	}
	if best == nil {
		return nil
	}
	p.turn++
	s := best.free[0]
	best.free = best.free[1:]
	best.busy++
	s.since = clock(&now)
	return s
}

// Load returns how many of w's slots are in use and whether w is suspended.
func (p *Pool) Load(w *Worker) (busy int, suspended bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.busy, w.suspended
}
