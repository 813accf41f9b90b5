package supervise

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/dispatch"
	bridgev1 "bridge/proto/bridge/v1"
)

// Config says what to run and how many.
type Config struct {
	Command Command
	Runner  string // runner spec, for logs
	Workers int
	Threads int
	// Pipeline is how many requests beyond Threads a busy worker may hold
	// (each on its own Slot stream), waiting their turn inside the runner.
	Pipeline     int
	StartTimeout time.Duration
	Log          zerolog.Logger
	// Generation numbers worker sets across reloads (0 or 1: the first).
	Generation int
	// OnRestart, if set, is told each time a worker is replaced and why
	// ("exited": crash, harakiri or a failed health check; "max-requests",
	// "max-lifetime", "max-rss", "stuck").
	OnRestart func(reason string)
	// OnReload, if set, is told whether each reload succeeded (Fleet).
	OnReload func(ok bool)
	// MaxRequests recycles a worker after that many requests (0: never),
	// plus a random 0..MaxRequestsJitter so workers do not all recycle at
	// once. The replacement is ready before the old worker drains.
	MaxRequests, MaxRequestsJitter int
	// MaxLifetime recycles a worker once it is that old (0: never), plus up
	// to a tenth more at random so workers started together do not leave
	// together.
	MaxLifetime time.Duration
	// MaxRSS recycles a worker whose process group uses more resident
	// memory than this many bytes (0: never). Checked every second.
	MaxRSS int64
	// CancelGrace is how long an app may keep running a cancelled request
	// before its worker counts as stuck: its stacks are dumped (SIGUSR1)
	// and it is replaced. 0: cancelled requests are not followed up.
	CancelGrace time.Duration
	// RecycleGrace (--grace) bounds how long a recycled worker may finish
	// its requests; runners are told it as BRIDGE_GRACE.
	RecycleGrace time.Duration
}

// Supervisor keeps Config.Workers runners alive and registered with the pool.
type Supervisor struct {
	cfg  Config
	pool *dispatch.Pool

	ctx    context.Context // workers' lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopWatch  chan struct{}
	watchOnce  sync.Once
	fewerSlots sync.Once // logged that the runner offers fewer slots

	mu       sync.Mutex
	running  map[int]*slotWorker
	waiting  map[int]time.Time // worker index -> restart after a failure at
	draining bool              // Stop has begun
	pokes    []chan struct{}   // per worker index: "check it now"
}

type slotWorker struct {
	proc    *Process
	w       *dispatch.Worker
	limit   int64     // requests before recycling; 0 = never
	retires time.Time // recycle at this time; zero = never
	// Set from other goroutines, acted upon by the worker's watch loop.
	stuck   atomic.Bool // the app ignored a cancellation
	overRSS atomic.Bool // its process group passed MaxRSS
}

// New makes a supervisor that feeds pool.
func New(cfg Config, pool *dispatch.Pool) *Supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	pokes := make([]chan struct{}, cfg.Workers)
	for i := range pokes {
		pokes[i] = make(chan struct{}, 1)
	}
	return &Supervisor{pokes: pokes, cfg: cfg, pool: pool, ctx: ctx, cancel: cancel,
		running: map[int]*slotWorker{}, waiting: map[int]time.Time{}, stopWatch: make(chan struct{})}
}

// Start launches every worker and returns once all answer Describe; only
// then do they join dispatch, all together. If any fails to start, the
// others are stopped and the first error is returned: an app that cannot
// load should stop bridge at start-up, loudly, and a reload that cannot
// load must not mix new workers in with the old generation.
func (s *Supervisor) Start(ctx context.Context) error {
	errs := make([]error, s.cfg.Workers)
	var wg sync.WaitGroup
	for i := range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startOne(ctx, i, 0, false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			s.Stop(0)
			return err // the first worker's reason; the others say the same
		}
	}
	s.mu.Lock()
	for i := range s.cfg.Workers {
		s.pool.Add(s.running[i].w)
	}
	s.mu.Unlock()
	for i := range s.cfg.Workers {
		s.wg.Add(1)
		go s.watch(i)
	}
	if s.cfg.MaxRSS > 0 {
		s.wg.Add(1)
		go s.watchRSS()
	}
	return nil
}

// workerName is "w2" for the second worker, "w2.3" for its third
// replacement, and "g4.w2.3" in the fourth generation (after 3 reloads).
func (s *Supervisor) workerName(i, restart int) string {
	name := fmt.Sprintf("w%d", i+1)
	if restart > 0 {
		name = fmt.Sprintf("w%d.%d", i+1, restart)
	}
	if s.cfg.Generation > 1 {
		name = fmt.Sprintf("g%d.%s", s.cfg.Generation, name)
	}
	return name
}

// slots is how many Slot streams a worker gets: its threads plus the
// pipeline, as far as the runner says it accepts them (Describe.slots; a
// runner that does not say gets one stream per thread).
func (s *Supervisor) slots(info *bridgev1.DescribeResponse) int {
	return max(s.cfg.Threads, min(s.cfg.Threads+s.cfg.Pipeline, int(info.GetSlots())))
}

// startOne starts worker i; it joins dispatch at once if join is set.
func (s *Supervisor) startOne(ctx context.Context, i, restart int, join bool) error {
	name := s.workerName(i, restart)
	log := s.cfg.Log.With().Str("worker", name).Str("runner", s.cfg.Runner).Logger()
	asked := s.cfg.Threads + s.cfg.Pipeline
	p, err := StartProcess(ctx, ProcessConfig{Command: s.cfg.Command, Name: name, Threads: s.cfg.Threads,
		Slots: asked, Workers: s.cfg.Workers, Grace: s.cfg.RecycleGrace,
		StartTimeout: s.cfg.StartTimeout, Log: log})
	if err != nil {
		return fmt.Errorf("worker %s: %w", name, err)
	}
	got := s.slots(p.info)
	if got < asked {
		// The runner's limit, not a fault: said once per generation, not
		// at every restart of a crash-looping worker.
		s.fewerSlots.Do(func() {
			s.cfg.Log.Info().Str("runner", s.cfg.Runner).Int("asked", asked).Int("slots", got).
				Msgf("the runner offers %d Slot streams per worker of the %d asked for (--threads + --pipeline); bridge opens %d", got, asked, got)
		})
	}
	log = log.With().Int("pid", p.PID()).Logger()
	w := dispatch.NewWorker(s.ctx, name, p.rpc, p.info, s.cfg.Threads, got, log)
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
	sw := &slotWorker{proc: p, w: w, limit: limit, retires: retires}
	w.CancelGrace = s.cfg.CancelGrace
	w.OnStuck = func(string) {
		sw.stuck.Store(true)
		w.OnBroken()
	}
	s.mu.Lock()
	s.running[i] = sw
	delete(s.waiting, i)
	s.mu.Unlock()
	if join {
		s.pool.Add(w)
	}
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
			cur.proc.Kill()
			s.cfg.Log.Warn().Str("worker", cur.w.Name).Int("pid", cur.proc.PID()).Msg("worker exited; restarting")
			if s.cfg.OnRestart != nil {
				s.cfg.OnRestart("exited")
			}
			s.mu.Lock()
			delete(s.running, i)
			s.mu.Unlock()
		}
		restarts++
		started := time.Now()
		if err := s.startOne(s.ctx, i, restarts, true); err != nil {
			s.cfg.Log.Error().Err(err).Dur("backoff", backoff).Msg("worker restart failed")
			s.mu.Lock()
			s.waiting[i] = time.Now().Add(backoff)
			s.mu.Unlock()
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
	if reason == "stuck" {
		s.dumpStacks(old, log)
	}
	if err := s.startOne(s.ctx, i, n, true); err != nil {
		// Keep the old one serving, without a limit: a replacement that
		// cannot start now would fail again at every tick.
		log.Error().Err(err).Msg("replacement failed to start; old worker keeps serving, no longer recycled")
		s.mu.Lock()
		old.limit, old.retires = 0, time.Time{}
		old.overRSS.Store(false)
		s.running[i] = old
		s.mu.Unlock()
		return
	}
	s.pool.Remove(old.w)
	deadline := time.Now().Add(s.cfg.RecycleGrace)
	for s.pool.Busy(old.w) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	old.proc.Kill()
	if s.cfg.OnRestart != nil {
		s.cfg.OnRestart(reason)
	}
}

// recycleReason says why a live worker is due for recycling, or "".
func (s *Supervisor) recycleReason(sw *slotWorker) string {
	switch {
	case sw.stuck.Load():
		return "stuck"
	case sw.overRSS.Load():
		return "max-rss"
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
	s.draining = true
	all := make([]*slotWorker, 0, len(s.running))
	for _, sw := range s.running {
		all = append(all, sw)
		s.pool.Remove(sw.w)
	}
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
		go func() { defer wg.Done(); sw.proc.Kill() }()
	}
	wg.Wait()
	s.mu.Lock()
	s.running = map[int]*slotWorker{}
	s.mu.Unlock()
}

// dumpStacks asks a stuck runner to log every thread's stack (SIGUSR1, see
// runners/CONTRACT.md) and gives it a moment to do so before it is replaced.
func (s *Supervisor) dumpStacks(sw *slotWorker, log zerolog.Logger) {
	pid := sw.proc.PID()
	if pid <= 0 {
		return
	}
	log.Warn().Int("pid", pid).Msg("worker ignored a cancelled request: asking it for its stacks (SIGUSR1), then replacing it")
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		log.Warn().Err(err).Msg("could not signal the runner")
		return
	}
	time.Sleep(300 * time.Millisecond)
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
