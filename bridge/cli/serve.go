package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/admin"
	"bridge/bridge/dispatch"
	"bridge/bridge/front"
	"bridge/bridge/supervise"
	"bridge/runners"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	// SIGHUP reloads; until the workers run it is noted, not fatal.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	o := &options{}
	if err := parseFlags("serve", o, true, args, stderr); err != nil {
		return err
	}
	if err := validate(o); err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	mode, _ := strconv.ParseUint(o.socketMode, 8, 32)
	// Before anything starts: the runners must not inherit these.
	sd := newNotifier()
	inherited, err := front.InheritSockets()
	if err != nil {
		return err
	}
	sock := front.ListenConfig{Mode: os.FileMode(mode), Group: o.socketGroup, Inherited: inherited}
	tuneRuntime(log)
	cmd, err := runnerCommand(ctx, o)
	if err != nil {
		return err
	}

	pool := dispatch.NewPool(o.backlog, o.queueTimeout)
	metrics := admin.NewMetrics(pool)
	h := &front.Handler{Pool: pool, Log: log, Runner: o.runner, Limits: limitsOf(o), Begin: metrics.Begin}
	// Requests keep running after a shutdown signal: they get their own
	// context, cancelled only when the grace period is over.
	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	cfg := front.Config{Handler: h, ServerName: o.serverName, Base: reqCtx, Socket: sock,
		// One runner serves every request, so every interface's
		// modifier1 reaches it (uWSGI configs keep working).
		Modifiers: runners.AppModifiers()}

	// Listeners first: a port in use should fail before any app loads.
	var lns []listener
	closeAll := func() {
		for _, l := range lns {
			l.ln.Close()
		}
	}
	fronts := map[string]front.Front{}
	addrs := map[string][]string{"uwsgi": o.uwsgi, "http": o.http}
	for _, kind := range slices.Sorted(maps.Keys(front.Kinds)) {
		for _, a := range addrs[kind] {
			f := fronts[kind]
			if f == nil {
				f = front.Kinds[kind](cfg)
				fronts[kind] = f
			}
			ln, err := f.Listen(a)
			if err != nil {
				closeAll()
				return err
			}
			lns = append(lns, listener{kind, a, ln, f})
		}
	}
	var adminLns []listener
	for _, a := range o.admin {
		ln, err := front.Listen(a, sock)
		if err != nil {
			closeAll()
			return err
		}
		adminLns = append(adminLns, listener{"admin", a, ln, nil})
	}
	if err := trustedInherited(lns); err != nil {
		closeAll()
		return err
	}
	warnUnusedSockets(log, inherited)

	// The worker settings go in as a reload puts them (nextGeneration).
	fleet := supervise.NewFleet(nextGeneration(supervise.Config{
		Log: log, OnRestart: metrics.Restarted, OnReload: metrics.Reloaded, RecycleGrace: o.grace,
	}, o, cmd), pool)
	if err := fleet.Start(ctx); err != nil {
		closeAll()
		for _, l := range adminLns {
			l.ln.Close()
		}
		return err
	}
	metrics.WatchWorkers(fleet)

	var adminSrv []*http.Server
	adm := admin.New(pool, metrics)
	// A reload re-reads the settings (and --config) as a start would.
	reloads := &configReloader{ctx: ctx, args: args, running: o, fleet: fleet, log: log, serving: h.SetRunner}
	adm.States, adm.Reload, adm.ReloadOpen, adm.Token = fleet.States, admin.Coalesce(reloads), o.adminReload, o.adminSecret
	var wg sync.WaitGroup
	for _, l := range lns {
		log.Info().Str("front", l.kind).Str("addr", l.addr).Msg("listening")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.f.Serve(l.ln); err != nil {
				log.Error().Err(err).Str("front", l.kind).Str("addr", l.addr).Msg("listener failed")
			}
		}()
	}
	for _, l := range adminLns {
		log.Info().Str("front", l.kind).Str("addr", l.addr).Msg("listening")
		srv := &http.Server{Handler: adm.Handler(), ReadHeaderTimeout: 10 * time.Second}
		adminSrv = append(adminSrv, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Str("addr", l.addr).Msg("admin listener failed")
			}
		}()
	}
	log.Info().Str("runner", o.runner).Int("workers", o.workers).Int("threads", o.threads).Int("pipeline", o.pipeline).Msg("bridge ready")
	sd.notify(log, "READY=1")

	wg.Add(1)
	go func() {
		defer wg.Done()
		reloadOnHangup(ctx, hup, adm.Reload)
	}()
	<-ctx.Done()
	sd.notify(log, "STOPPING=1")
	adm.Drain() // readiness fails first, so probes stop sending traffic
	drain(log, o.grace, lns, fronts, fleet, cancelReqs)
	for _, srv := range adminSrv {
		srv.Close()
	}
	wg.Wait()
	log.Info().Msg("bridge stopped")
	return nil
}

// listener is one open socket and the front that serves it.
type listener struct {
	kind string
	addr string
	ln   net.Listener
	f    front.Front
}

// limitsOf gathers the flags that bound what one client may cost.
func limitsOf(o *options) front.Limits {
	return front.Limits{
		Timeout: o.timeout, HeaderTimeout: o.headerTimeout, BodyTimeout: o.bodyTimeout, WriteTimeout: o.writeTimeout,
		MaxHeaders: o.maxHeaders, MaxHeaderSize: int(o.maxHeaderSize), MaxBody: int64(o.maxBody), MaxConns: o.maxConns,
	}
}

// drain is the shutdown order: stop accepting, let requests in flight finish
// within grace, then stop the runners.
func drain(log zerolog.Logger, grace time.Duration, lns []listener, fronts map[string]front.Front, fleet *supervise.Fleet, cancelReqs context.CancelFunc) {
	log.Info().Str("grace", grace.String()).Msg("shutting down: no new connections, finishing requests in flight")
	deadline := time.Now().Add(grace)
	gctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for _, l := range lns {
		l.ln.Close()
	}
	var wg sync.WaitGroup
	for _, f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.Drain(gctx)
		}()
	}
	wg.Wait()
	cancelReqs()
	fleet.Stop(time.Until(deadline))
}

// reloadOnHangup starts a new worker generation on each SIGHUP until ctx
// ends, through the same coalescing Reloader as POST /reload
// (admin.Coalesce): signals that arrive during a reload are merged into one
// more.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, reload admin.Reloader) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = reload.Reload(ctx) // the fleet logs the outcome
		}
	}
}

func validate(o *options) error {
	switch {
	case len(o.admin) > 1:
		return usageError("--admin may be given once")
	case len(o.uwsgi) == 0 && len(o.http) == 0:
		return usageError("no listener: give --uwsgi ADDR and/or --http ADDR, e.g. --uwsgi unix:/run/app.sock")
	case o.workers < 1:
		return usageError(fmt.Sprintf("--workers %d: must be at least 1", o.workers))
	case o.threads < 1:
		return usageError(fmt.Sprintf("--threads %d: must be at least 1", o.threads))
	case o.pipeline < 0:
		// No upper bound here: a runner that takes fewer streams says so in
		// Describe.slots, and bridge opens no more (runners/CONTRACT.md).
		return usageError(fmt.Sprintf("--pipeline %d: must be 0 or more", o.pipeline))
	case o.maxRequests < 0 || o.maxJitter < 0:
		return usageError("--max-requests and --max-requests-jitter must not be negative")
	case o.backlog < 0 || o.maxConns < 0:
		return usageError("--backlog and --max-connections must not be negative")
	case o.grace < 0 || o.timeout < 0 || o.queueTimeout < 0 || o.maxLifetime < 0 || o.cancelGrace < 0 ||
		o.headerTimeout < 0 || o.bodyTimeout < 0 || o.writeTimeout < 0:
		return usageError("durations must not be negative")
	case o.maxHeaders < 0:
		return usageError(fmt.Sprintf("--max-headers %d: must be 0 (no limit) or more", o.maxHeaders))
	case o.maxHeaderSize < 1024:
		return usageError(fmt.Sprintf("--max-header-size %d: must be at least 1K", o.maxHeaderSize))
	}
	for _, a := range o.uwsgi {
		if err := trustedUwsgiAddr(a); err != nil {
			return err
		}
	}
	if m, err := strconv.ParseUint(o.socketMode, 8, 32); err != nil || m == 0 || m > 0o777 {
		return usageError(fmt.Sprintf("--socket-mode %q: want an octal mode from 0001 to 0777, such as 0660", o.socketMode))
	}
	if o.socketGroup != "" {
		if _, err := front.LookupGroup(o.socketGroup); err != nil {
			return usageError(fmt.Sprintf("--socket-group %s: %v", o.socketGroup, err))
		}
	}
	if (o.adminReload || o.adminToken != "") && len(o.admin) == 0 {
		return usageError("--admin-reload and --admin-token-file serve POST /reload on the admin listener: give --admin ADDR too")
	}
	if o.adminToken != "" {
		token, err := admin.ReadToken(o.adminToken)
		if err != nil {
			return usageError(err.Error())
		}
		o.adminSecret = token
	}
	return nil
}

// tuneRuntime sets Go's scheduler and GC for a front that mostly moves
// bytes, unless GOMAXPROCS / GOGC say otherwise.
//
// Half the cores go to the runner processes: bridge's own work is handing
// bytes between sockets, and with fewer Ps those hand-offs stay on one
// thread instead of waking another (measured on 2 cores: Go CPU per hello
// request 187 -> 114 us, throughput +37%, see bench/NOTES.md).
//
// GC at 50% heap growth instead of 100%: with 1,000 open client
// connections the live heap is ~18 MiB, and the default goal doubled it;
// RSS 81 -> 69 MiB at the same throughput and Go CPU (bench/NOTES.md).
// But never less than 8 MiB of growth (gcTuner): a small live heap is not
// collected every couple of MiB.
func tuneRuntime(log zerolog.Logger) {
	if os.Getenv("GOGC") == "" {
		startGCTuner()
	}
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := max(1, runtime.GOMAXPROCS(0)/2)
	runtime.GOMAXPROCS(n)
	log.Debug().Int("gomaxprocs", n).Msg("go scheduler threads")
}

// trustedUwsgiAddr refuses uwsgi listeners that other hosts could reach: the
// uwsgi front believes the REMOTE_ADDR, HTTPS and SCRIPT_NAME its peer sends
// (U27), so only nginx on the same host (or pod) may talk to it.
func trustedUwsgiAddr(addr string) error {
	if strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, front.FDPrefix) {
		return nil // a passed socket is checked once open (trustedInherited)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // Listen reports the syntax error
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return usageError(fmt.Sprintf("--uwsgi %s: the uwsgi listener trusts the client address and scheme nginx sends, so it must be a unix socket or a loopback address (127.0.0.1:PORT); put nginx on the same host or pod", addr))
}
