package cli

import (
	"context"
	"flag"
	"io"
	"slices"

	"github.com/rs/zerolog"

	"bridge/bridge/supervise"
)

// reloadable are the settings a reload applies: they belong to the worker
// generation, which a reload replaces whole. Every other setting belongs to
// something that outlives a reload: the listeners (their sockets stay open
// across reloads, which is what makes a reload lose no connection), the
// front's limits and queue, the admin token, bridge's own logger and the
// shutdown grace. Changing one of those needs a restart; a new flag is in
// that group until it is added here.
var reloadable = map[string]bool{
	"runner": true, "chdir": true, "interpreter": true, "env": true,
	"workers": true, "threads": true, "pipeline": true, "start-timeout": true,
	"max-requests": true, "max-requests-jitter": true, "max-lifetime": true, "max-rss": true,
	"cancel-grace": true,
}

// configReloader is serve's Reloader (behind admin.Coalesce): each reload
// reads the settings again as a start would (command line, then BRIDGE_*,
// then the --config file, read anew) and starts the next generation with
// them. Settings that need a restart keep their running value, each change
// logged as a warning.
type configReloader struct {
	ctx     context.Context // serve's: holds the runState that removes private shim directories
	args    []string        // serve's command line
	running *options        // the settings bridge started with
	fleet   *supervise.Fleet
	log     zerolog.Logger
	serving func(runner string) // told the runner spec of each generation that starts serving
}

func (r *configReloader) Reload(ctx context.Context) (int, error) {
	var spec string
	gen, err := r.fleet.ReloadWith(ctx, func(ctx context.Context, cur supervise.Config) (supervise.Config, error) {
		o, err := r.reread()
		if err != nil {
			return cur, err
		}
		was, now := settingsOf(r.running), settingsOf(o)
		for _, name := range needRestart(was, now) {
			r.log.Warn().Str("key", name).Str("running", was[name]).Str("new", now[name]).
				Msg("reload: this setting changed but needs a restart; the running value stays")
		}
		keepRunning(o, r.running)
		// The reload's context (a stop cancels it), with serve's runState:
		// a private shim directory is removed when serve ends.
		if st, ok := r.ctx.Value(runStateKey{}).(*runState); ok {
			ctx = context.WithValue(ctx, runStateKey{}, st)
		}
		cmd, err := runnerCommand(ctx, o)
		if err != nil {
			return cur, err
		}
		spec = o.runner
		r.log.Info().Str("runner", o.runner).Str("chdir", cmd.Dir).Str("interpreter", cmd.Path).
			Int("workers", o.workers).Int("threads", o.threads).Int("pipeline", o.pipeline).
			Msg("reload: settings of the new generation")
		return nextGeneration(cur, o, cmd), nil
	})
	if err == nil && r.serving != nil {
		r.serving(spec)
	}
	return gen, err
}

// reread parses serve's settings again, as at start, and validates them.
func (r *configReloader) reread() (*options, error) {
	o := &options{}
	fs := newFlagSet("serve", o, true, io.Discard)
	if err := parse(fs, fs, r.args); err != nil {
		return nil, err
	}
	if err := validate(o); err != nil {
		return nil, err
	}
	return o, nil
}

// needRestart lists, sorted, the settings (as settingsOf gives them) that
// differ between the running ones and the next but that a reload cannot
// apply.
func needRestart(was, now map[string]string) []string {
	var out []string
	for name, v := range now {
		// The file's path comes from the command line or BRIDGE_CONFIG,
		// which a reload reads as they were.
		if v != was[name] && !reloadable[name] && name != "config" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// keepRunning puts running's values into next for every setting a reload
// cannot apply, so that the new generation is told what bridge really runs
// with (the runners get --log-level, for instance). The fields copied from
// next are those of reloadable (TestKeepRunningMatchesReloadable).
func keepRunning(next, running *options) {
	keep := *running
	keep.runner, keep.chdir, keep.interpreter, keep.env = next.runner, next.chdir, next.interpreter, next.env
	keep.workers, keep.threads, keep.pipeline, keep.startWait = next.workers, next.threads, next.pipeline, next.startWait
	keep.maxRequests, keep.maxJitter, keep.maxLifetime, keep.maxRSS = next.maxRequests, next.maxJitter, next.maxLifetime, next.maxRSS
	keep.cancelGrace = next.cancelGrace
	*next = keep
}

// nextGeneration is cur with the reloadable settings of o: serve's first
// generation is built with it too.
func nextGeneration(cur supervise.Config, o *options, cmd supervise.Command) supervise.Config {
	cur.Command, cur.Runner = cmd, o.runner
	cur.Workers, cur.Threads, cur.Pipeline, cur.StartTimeout = o.workers, o.threads, o.pipeline, o.startWait
	cur.MaxRequests, cur.MaxRequestsJitter, cur.MaxLifetime, cur.MaxRSS = o.maxRequests, o.maxJitter, o.maxLifetime, int64(o.maxRSS)
	cur.CancelGrace = o.cancelGrace
	return cur
}

// settingsOf maps every serve flag name to its value in o, as text.
func settingsOf(o *options) map[string]string {
	view := &options{}
	fs := newFlagSet("serve", view, true, io.Discard)
	*view = *o // after newFlagSet, which writes its defaults into view
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value.String() })
	return out
}
