package supervise

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	bridgev1 "bridge/proto/bridge/v1"
)

// Config says what to run and how many.
type Config struct {
	Command      Command
	Runner       string // runner spec, for logs
	Workers      int
	Threads      int
	StartTimeout time.Duration
	Log          zerolog.Logger
	// OnRestart, if set, is told each time a worker is replaced and why
	// ("exited": crash, harakiri or a failed health check; "max-requests").
	OnRestart func(reason string)
	// MaxRequests recycles a worker after that many requests (0: never),
	// plus a random 0..MaxRequestsJitter so workers do not all recycle at
	// once. The replacement is ready before the old worker drains.
	MaxRequests, MaxRequestsJitter int
	// MaxLifetime recycles a worker once it is that old (0: never), plus up
	// to a tenth more at random so workers started together do not leave
	// together.
	MaxLifetime time.Duration
	// RecycleGrace bounds how long a recycled worker may finish its
	// requests.
	RecycleGrace time.Duration
}

// Supervisor keeps Config.Workers runners alive and registered with the pool.
type Supervisor struct {
	cfg  Config
	pool *dispatch.Pool

	ctx    context.Context // workers' lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopWatch chan struct{}
	watchOnce sync.Once

	mu      sync.Mutex
	running map[int]*slotWorker
	pokes   []chan struct{} // per worker index: "check it now"
}

type slotWorker struct {
	proc    *process
	w       *dispatch.Worker
	limit   int64     // requests before recycling; 0 = never
	retires time.Time // recycle at this time; zero = never
}

// New makes a supervisor that feeds pool.
func New(cfg Config, pool *dispatch.Pool) *Supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	pokes := make([]chan struct{}, cfg.Workers)
	for i := range pokes {
		pokes[i] = make(chan struct{}, 1)
	}
	return &Supervisor{pokes: pokes, cfg: cfg, pool: pool, ctx: ctx, cancel: cancel, running: map[int]*slotWorker{}, stopWatch: make(chan struct{})}
}

// Start launches every worker and returns once all answer Describe. If any
// fails to start, the others are stopped and the first error is returned:
// an app that cannot load should stop bridge at start-up, loudly.
func (s *Supervisor) Start(ctx context.Context) error {
	errs := make([]error, s.cfg.Workers)
	var wg sync.WaitGroup
	for i := range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startOne(ctx, i, 0)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			s.Stop(0)
			return err // the first worker's reason; the others say the same
		}
	}
	for i := range s.cfg.Workers {
		s.wg.Add(1)
		go s.watch(i)
	}
	return nil
}

func (s *Supervisor) startOne(ctx context.Context, i, restart int) error {
	name := fmt.Sprintf("w%d", i+1)
	if restart > 0 {
		name = fmt.Sprintf("w%d.%d", i+1, restart)
	}
	log := s.cfg.Log.With().Str("worker", name).Str("runner", s.cfg.Runner).Logger()
	p, err := startProcess(ctx, s.cfg.Command, name, s.cfg.Threads, s.cfg.Workers, s.cfg.StartTimeout, log)
	if err != nil {
		return fmt.Errorf("worker %s: %w", name, err)
	}
	log = log.With().Int("pid", p.pid()).Logger()
	w := dispatch.NewWorker(s.ctx, name, p.rpc, p.info, s.cfg.Threads, log)
	// Called by dispatch (never blocking) when a stream breaks or the
	// request limit is reached: either way, look at this worker now.
	w.OnBroken = func() {
		select {
		case s.pokes[i] <- struct{}{}:
		default:
		}
	}
	var limit int64
	if s.cfg.MaxRequests > 0 {
		limit = int64(s.cfg.MaxRequests + rand.IntN(s.cfg.MaxRequestsJitter+1))
	}
	w.RecycleAfter = limit
	var retires time.Time
	if s.cfg.MaxLifetime > 0 {
		retires = time.Now().Add(s.cfg.MaxLifetime + rand.N(s.cfg.MaxLifetime/10+1))
	}
	s.mu.Lock()
	s.running[i] = &slotWorker{proc: p, w: w, limit: limit, retires: retires}
	s.mu.Unlock()
	s.pool.Add(w)
	log.Info().Str("app", p.info.App).Str("interface", p.info.Interface).
		Str("language_version", p.info.LanguageVersion).Uint32("threads", p.info.Threads).Msg("worker ready")
	return nil
}

// watch restarts worker i whenever its process exits, backing off
// exponentially (capped at 10 s) while it keeps dying young.
func (s *Supervisor) watch(i int) {
	defer s.wg.Done()
	restarts, backoff := 0, 100*time.Millisecond
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		poked := false
		select {
		case <-s.stopWatch:
			return
		case <-tick.C:
		case <-s.pokes[i]:
			poked = true
		}
		s.mu.Lock()
		cur := s.running[i]
		s.mu.Unlock()
		if cur != nil && !cur.proc.client.Exited() {
			if reason := s.recycleReason(cur); reason != "" {
				restarts++
				s.recycle(i, cur, restarts, reason)
				continue
			}
		}
		if cur != nil && !cur.proc.client.Exited() {
			if !poked || !cur.proc.dead() {
				s.pool.Resume(cur.w) // alive: a stream broke, not the runner
				continue
			}
		}
		if cur != nil {
			s.pool.Remove(cur.w)
			cur.proc.kill()
			s.cfg.Log.Warn().Str("worker", cur.w.Name).Int("pid", cur.proc.pid()).Msg("worker exited; restarting")
			if s.cfg.OnRestart != nil {
				s.cfg.OnRestart("exited")
			}
			s.mu.Lock()
			delete(s.running, i)
			s.mu.Unlock()
		}
		restarts++
		started := time.Now()
		if err := s.startOne(s.ctx, i, restarts); err != nil {
			s.cfg.Log.Error().Err(err).Dur("backoff", backoff).Msg("worker restart failed")
			select {
			case <-s.stopWatch:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		if time.Since(started) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
	}
}

// recycle replaces worker i after its request limit: the replacement joins
// dispatch first, then the old worker leaves it, finishes its requests (up
// to RecycleGrace) and is shut down, so no request waits or fails.
func (s *Supervisor) recycle(i int, old *slotWorker, n int, reason string) {
	log := s.cfg.Log.With().Str("worker", old.w.Name).Logger()
	log.Info().Int64("requests", s.pool.Served(old.w)).Str("reason", reason).Msg("recycling worker")
	if err := s.startOne(s.ctx, i, n); err != nil {
		// Keep the old one serving, without a limit: a replacement that
		// cannot start now would fail again at every tick.
		log.Error().Err(err).Msg("replacement failed to start; old worker keeps serving, no longer recycled")
		s.mu.Lock()
		old.limit, old.retires = 0, time.Time{}
		s.running[i] = old
		s.mu.Unlock()
		return
	}
	s.pool.Remove(old.w)
	deadline := time.Now().Add(s.cfg.RecycleGrace)
	for s.pool.Busy(old.w) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	old.proc.kill()
	if s.cfg.OnRestart != nil {
		s.cfg.OnRestart(reason)
	}
}

// recycleReason says why a live worker is due for recycling, or "".
func (s *Supervisor) recycleReason(sw *slotWorker) string {
	switch {
	case sw.limit > 0 && s.pool.Served(sw.w) >= sw.limit:
		return "max-requests"
	case !sw.retires.IsZero() && time.Now().After(sw.retires):
		return "max-lifetime"
	}
	return ""
}

// Stop takes every worker out of dispatch, waits up to grace for requests in
// flight to finish, then shuts the runners down.
func (s *Supervisor) Stop(grace time.Duration) {
	s.cancelWatch()
	s.mu.Lock()
	all := make([]*slotWorker, 0, len(s.running))
	for _, sw := range s.running {
		all = append(all, sw)
		s.pool.Remove(sw.w)
	}
	s.running = map[int]*slotWorker{}
	s.mu.Unlock()
	deadline := time.Now().Add(grace)
	for _, sw := range all {
		for s.pool.Busy(sw.w) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.cancel() // cancels streams still open after the grace period
	var wg sync.WaitGroup
	for _, sw := range all {
		wg.Add(1)
		go func() { defer wg.Done(); sw.proc.kill() }()
	}
	wg.Wait()
}

// cancelWatch stops the restart loops without touching the workers.
func (s *Supervisor) cancelWatch() {
	s.watchOnce.Do(func() { close(s.stopWatch) })
	s.wg.Wait()
}

// Info returns the Describe answer of a running worker (nil if none).
func (s *Supervisor) Info() *bridgev1.DescribeResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sw := range s.running {
		return sw.proc.info
	}
	return nil
}
