package dispatch

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

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
	// threads is how many requests the runner runs at once; slots past it
	// carry pipelined requests that wait their turn inside the runner.
	threads int

	// OnBroken, if set, is called (without blocking) when a slot's stream
	// breaks for a reason other than its request's cancellation: the
	// supervisor then checks the process at once instead of at its next tick.
	OnBroken func()
	// RecycleAfter, if > 0, makes the pool call OnBroken once the worker has
	// finished that many requests, so the supervisor recycles it promptly.
	RecycleAfter int64
	// CancelGrace is how long the app may keep running a request whose
	// stream was cancelled (timeout, client gone). Until the runner's
	// Describe stops listing it, its slot is kept out of dispatch: a new
	// stream would only queue behind the app thread that is still busy.
	CancelGrace time.Duration
	// OnStuck, if set, is called once the app has kept a cancelled request
	// past CancelGrace (or the runner stopped answering); the slot stays out
	// of dispatch and the supervisor replaces the worker.
	OnStuck func(requestID string)

	// Guarded by the pool's mutex.
	pool      *Pool
	free      []*Slot
	busy      int
	served    int64 // requests finished on this worker
	removed   bool
	suspended bool
}

// NewWorker wraps a started runner that runs threads requests at once and
// may hold up to slots (>= threads). Slot streams open lazily, on their
// first request, and again after a broken exchange.
func NewWorker(ctx context.Context, name string, rpc bridgev1.RunnerClient, info *bridgev1.DescribeResponse, threads, slots int, log zerolog.Logger) *Worker {
	w := &Worker{Name: name, Info: info, rpc: rpc, log: log, ctx: ctx, threads: max(threads, 1)}
	for i := 0; i < max(slots, threads); i++ {
		w.slots = append(w.slots, &Slot{worker: w, index: i})
	}
	return w
}

// Slot is one place for a request in a worker (an app thread, or a turn
// behind one), reached over one long-lived Slot stream that carries its
// requests one after another.
type Slot struct {
	worker *Worker
	index  int
	// since is when the slot's current request was handed out (zero while
	// free); guarded by the pool's mutex.
	since time.Time

	// The rest is used only by the request holding the slot (Acquire hands
	// a slot to one request at a time), so it needs no lock.
	stream bridgev1.Runner_SlotClient
	cancel context.CancelFunc
	codec  *frameCodec // the stream's; holds the last response frame's buffer
	// abandoned is the id of a request whose stream was cancelled while the
	// app may still be running it; Release then waits for the app to let go
	// and calls the worker stuck if it still runs the request at stuckAt
	// (zero: never).
	abandoned string
	stuckAt   time.Time
}

// abandon notes that request id was cancelled mid-exchange. A request whose
// deadline passed may run CancelGrace longer; one whose client left may run
// until its deadline plus CancelGrace: leaving is the client's business,
// and an app still inside a request it was allowed is not stuck. Without a
// deadline (--timeout 0) it may run on, holding its slot.
func (s *Slot) abandon(ctx context.Context, id string) {
	s.abandoned, s.stuckAt = id, time.Time{}
	if dl, ok := ctx.Deadline(); ok {
		if now := time.Now(); dl.Before(now) {
			dl = now
		}
		s.stuckAt = dl.Add(s.worker.CancelGrace)
	}
}

// Worker returns the worker the slot belongs to.
func (s *Slot) Worker() *Worker { return s.worker }

func (s *Slot) open() error {
	if s.stream != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(s.worker.ctx)
	codec := newFrameCodec()
	st, err := s.worker.rpc.Slot(ctx, grpc.ForceCodecV2(codec))
	if err != nil {
		cancel()
		return fmt.Errorf("open slot %d on %s: %w", s.index, s.worker.Name, err)
	}
	s.stream, s.cancel, s.codec = st, cancel, codec
	return nil
}

// reset drops the stream after an exchange that did not end cleanly; the
// runner sees the cancellation and closes the app's body.
func (s *Slot) reset() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stream, s.cancel, s.codec = nil, nil, nil
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

// awaitLetGo returns s to dispatch once the runner no longer lists request
// id as running. Past stuckAt (if set) the app is stuck: OnStuck is called
// and s stays out.
func (w *Worker) awaitLetGo(s *Slot, id string, stuckAt time.Time) {
	pause := 10 * time.Millisecond
	for {
		// A runner that cannot answer at all (one thread, busy in the app)
		// counts as still running the request.
		ctx, cancel := context.WithTimeout(w.ctx, time.Second)
		info, err := w.rpc.Describe(ctx, &bridgev1.DescribeRequest{})
		cancel()
		if w.ctx.Err() != nil || w.pool.gone(w) {
			return // the worker is being replaced anyway
		}
		if err == nil && !slices.Contains(info.Running, id) {
			w.pool.reinstate(s)
			return
		}
		if !stuckAt.IsZero() && !time.Now().Before(stuckAt) {
			break
		}
		wait := pause
		if !stuckAt.IsZero() {
			wait = min(wait, time.Until(stuckAt))
		}
		time.Sleep(wait)
		pause = min(2*pause, 500*time.Millisecond)
	}
	w.log.Warn().Str("req_id", id).Str("worker", w.Name).Dur("cancel_grace", w.CancelGrace).
		Msg("app is still running a cancelled request: worker is stuck")
	if w.OnStuck != nil {
		w.OnStuck(id)
	}
}
