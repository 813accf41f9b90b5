package dispatch

import (
	"context"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	bridgev1 "bridge/proto/bridge/v1"
)

// Worker is dispatch's view of one runner process: its gRPC client and its
// slots. The supervisor creates it once the runner has answered Describe.
type Worker struct {
	// Name identifies the worker in logs ("w1", "w1.2" after a restart).
	Name string
	// Info is the runner's Describe answer.
	Info *bridgev1.DescribeResponse

	rpc   bridgev1.RunnerClient
	log   zerolog.Logger
	ctx   context.Context // cancelled when the worker is torn down
	slots []*Slot

	// OnBroken, if set, is called (without blocking) when a slot's stream
	// breaks for a reason other than its request's cancellation: the
	// supervisor then checks the process at once instead of at its next tick.
	OnBroken func()
	// RecycleAfter, if > 0, makes the pool call OnBroken once the worker has
	// finished that many requests, so the supervisor recycles it promptly.
	RecycleAfter int64

	// Guarded by the pool's mutex.
	pool      *Pool
	free      []*Slot
	busy      int
	served    int64 // requests finished on this worker
	removed   bool
	suspended bool
}

// NewWorker wraps a started runner with threads slots. Slot streams open
// lazily, on their first request, and again after a broken exchange.
func NewWorker(ctx context.Context, name string, rpc bridgev1.RunnerClient, info *bridgev1.DescribeResponse, threads int, log zerolog.Logger) *Worker {
	w := &Worker{Name: name, Info: info, rpc: rpc, log: log, ctx: ctx}
	for i := 0; i < threads; i++ {
		w.slots = append(w.slots, &Slot{worker: w, index: i})
	}
	return w
}

// Slot is one app thread of a worker, reached over one long-lived Slot
// stream that carries its requests one after another.
type Slot struct {
	worker *Worker
	index  int

	mu     sync.Mutex // held by the request using the slot; guards stream
	stream bridgev1.Runner_SlotClient
	cancel context.CancelFunc
}

// Worker returns the worker the slot belongs to.
func (s *Slot) Worker() *Worker { return s.worker }

func (s *Slot) open() error {
	if s.stream != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(s.worker.ctx)
	st, err := s.worker.rpc.Slot(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("open slot %d on %s: %w", s.index, s.worker.Name, err)
	}
	s.stream, s.cancel = st, cancel
	return nil
}

// reset drops the stream after an exchange that did not end cleanly; the
// runner sees the cancellation and closes the app's body.
func (s *Slot) reset() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stream, s.cancel = nil, nil
}

// broken takes the worker out of dispatch until its supervisor has checked
// it, so retries of undelivered requests go elsewhere.
func (w *Worker) broken() {
	if w.pool != nil {
		w.pool.suspend(w)
	}
	if w.OnBroken != nil {
		w.OnBroken()
	}
}

// retire takes the worker out of dispatch for good: its runner said it
// exits after the current response.
func (w *Worker) retire() {
	if w.pool != nil {
		w.pool.Remove(w)
	}
}
