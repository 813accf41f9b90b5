package supervise

import (
	"context"
	"errors"
	"sync"
	"time"

	"bridge/bridge/dispatch"
	bridgev1 "bridge/proto/bridge/v1"
)

// ErrStopping is returned by Reload once shutdown has begun.
var ErrStopping = errors.New("bridge is shutting down")

// Fleet is the current generation of workers plus the older ones still
// draining. Reload starts a whole new generation beside the current one and
// switches dispatch to it only once every new worker answers Describe, so
// an app that no longer loads leaves the old code serving.
type Fleet struct {
	cfg  Config
	pool *dispatch.Pool

	reloads sync.Mutex // one reload at a time; Stop waits for it

	mu       sync.Mutex
	cur      *Supervisor
	old      []*Supervisor // draining
	gen      int
	stopping bool
	drains   sync.WaitGroup

	stopCtx    context.Context // cancelled by Stop: a reload starting now gives up
	stopCancel context.CancelFunc
}

// NewFleet makes a fleet that feeds pool; cfg.Generation is ignored.
func NewFleet(cfg Config, pool *dispatch.Pool) *Fleet {
	ctx, cancel := context.WithCancel(context.Background())
	return &Fleet{cfg: cfg, pool: pool, stopCtx: ctx, stopCancel: cancel}
}

// Start starts the first generation (see Supervisor.Start).
func (f *Fleet) Start(ctx context.Context) error {
	f.reloads.Lock()
	defer f.reloads.Unlock()
	return f.startGeneration(ctx, f.config())
}

// config is the Config the serving generation was started with.
func (f *Fleet) config() Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

// startGeneration starts a generation with cfg and, once it serves, makes
// cfg the fleet's: later reloads and their drains start from it.
func (f *Fleet) startGeneration(ctx context.Context, cfg Config) error {
	f.mu.Lock()
	cfg.Generation = f.gen + 1
	f.mu.Unlock()
	next := New(cfg, f.pool)
	if err := next.Start(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	prev, prevGrace := f.cur, f.cfg.RecycleGrace
	f.cur, f.gen, f.cfg = next, cfg.Generation, cfg
	if prev != nil {
		f.old = append(f.old, prev)
	}
	f.mu.Unlock()
	if prev != nil {
		// The new generation is in dispatch; the old one leaves it now
		// and finishes what it is running, in the background.
		f.drains.Add(1)
		go func() {
			defer f.drains.Done()
			prev.Stop(prevGrace)
			f.mu.Lock()
			for i, s := range f.old {
				if s == prev {
					f.old = append(f.old[:i], f.old[i+1:]...)
					break
				}
			}
			f.mu.Unlock()
		}()
	}
	return nil
}

// Reconfigure is given the Config the serving generation runs with and
// returns the one the next generation starts with (bridge serve re-reads
// its config file here). An error fails the reload before any worker starts.
type Reconfigure func(ctx context.Context, cur Config) (Config, error)

// Reload replaces every worker with a new generation of the same Config and
// returns its number. On error the current generation keeps serving,
// untouched.
func (f *Fleet) Reload(ctx context.Context) (int, error) {
	return f.ReloadWith(ctx, nil)
}

// ReloadWith is Reload with the Config that next returns (nil: the same
// one). A failure of next counts and logs as a failed reload, like a
// generation that does not start.
func (f *Fleet) ReloadWith(ctx context.Context, next Reconfigure) (int, error) {
	f.reloads.Lock()
	defer f.reloads.Unlock()
	f.mu.Lock()
	stopping, gen := f.stopping, f.gen
	f.mu.Unlock()
	if stopping {
		return gen, ErrStopping
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(f.stopCtx, cancel)()
	cfg := f.config()
	log := cfg.Log.With().Int("generation", gen+1).Logger()
	log.Info().Msg("reload: starting a new generation of workers")
	started := time.Now()
	var err error
	if next != nil {
		var nc Config
		if nc, err = next(ctx, cfg); err == nil {
			cfg = nc
		}
	}
	if err == nil {
		err = f.startGeneration(ctx, cfg)
	}
	if cfg.OnReload != nil {
		cfg.OnReload(err == nil)
	}
	if err != nil {
		log.Error().Err(err).Int("serving_generation", gen).Msg("reload failed: the running generation keeps serving")
		return gen, err
	}
	log.Info().Dur("took", time.Since(started)).Msg("reload: new generation serving; the previous one is draining")
	return gen + 1, nil
}

// Stop stops every generation (see Supervisor.Stop); no reload starts after.
func (f *Fleet) Stop(grace time.Duration) {
	f.mu.Lock()
	f.stopping = true
	f.mu.Unlock()
	f.stopCancel()
	deadline := time.Now().Add(grace)
	f.reloads.Lock() // a reload in progress finishes first
	defer f.reloads.Unlock()
	f.mu.Lock()
	cur := f.cur
	f.mu.Unlock()
	if cur != nil {
		cur.Stop(time.Until(deadline))
	}
	f.drains.Wait()
}

// Generation returns the number of the generation serving now.
func (f *Fleet) Generation() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

// States lists the workers of every generation; older ones are draining.
func (f *Fleet) States() []WorkerState {
	f.mu.Lock()
	sups := append([]*Supervisor{f.cur}, f.old...)
	f.mu.Unlock()
	rss := groupRSS()
	var out []WorkerState
	for _, s := range sups {
		if s != nil {
			out = append(out, s.States(rss)...)
		}
	}
	return out
}

// Info returns the Describe answer of a current worker (nil if none).
func (f *Fleet) Info() *bridgev1.DescribeResponse {
	f.mu.Lock()
	cur := f.cur
	f.mu.Unlock()
	if cur == nil {
		return nil
	}
	return cur.Info()
}
