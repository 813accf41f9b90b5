// Command soak runs bridge under bounded mixed load for a while and checks
// that nothing but runner kills loses requests (`make soak`, bench/README.md
// "Soak").
//
// It starts one nginx (master and two workers) and a bridge per runner
// (python, perl, ruby; the apps in bench/soak/apps) with --uwsgi on a unix
// socket behind nginx, --http and --admin on 127.0.0.1, all in a private temp
// dir. Then, until --duration has passed:
//
//   - normal clients, a fixed number per kind and bridge, send hello, upload
//     (checked by length and SHA-256), stream and big requests (every byte
//     checked), mostly through nginx, some directly to bridge's --http;
//   - attackers hit bridge's --http directly (nginx would buffer them away):
//     slow readers, slow uploaders, header floods (also through nginx);
//   - every 20–60 s a random bridge gets SIGHUP (reload), and every 30–90 s
//     one runner process of a random bridge gets SIGKILL.
//
// A normal request that fails is explained only if it was in flight at a
// runner kill of its bridge. The report (printed, and written to
// bench/results/soak-<UTC time>.md with the logs beside it) has sent, ok,
// failed, explained and unexplained counts per bridge, kind and way in, what
// each attack got, the events, and RSS, fds and goroutines of every process at
// start and end. The exit status is 1 if any failure is unexplained or a
// process of the stack died, 2 if the stack did not start, 130 if it was
// interrupted (Ctrl-C: the load stops, the report is still written; a
// second Ctrl-C SIGKILLs everything at once).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	duration, drain, settle, sampleEvery     time.Duration
	reqTimeout, pause                        time.Duration
	hold, attackPause, floodPause            time.Duration
	reloadMin, reloadMax, killMin, killMax   time.Duration
	grace, startTimeout                      time.Duration
	bridge, nginx, appsDir, outDir, logLevel string
	runners, bridgeArgs                      []string
	workers                                  int
	hello, uploads, streams, bigs            int
	slowReaders, slowUploaders, floods       int
	slowKiB                                  int
	directShare                              float64
	seed                                     uint64
}

func parseFlags() *options {
	o := &options{}
	var runners, bridgeArgs string
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load runs")
	flag.StringVar(&o.bridge, "bridge", "bin/bridge", "the bridge binary")
	flag.StringVar(&o.nginx, "nginx", nginxPath(), "the nginx binary")
	flag.StringVar(&o.appsDir, "apps", "bench/soak/apps", "the soak apps, one folder per runner")
	flag.StringVar(&o.outDir, "out", "bench/results", "where the report and logs go")
	flag.StringVar(&runners, "runners", "python,perl,ruby", "bridges to start, comma-separated")
	flag.IntVar(&o.workers, "workers", 2, "each bridge's --workers")
	flag.DurationVar(&o.grace, "grace", 30*time.Second, "each bridge's --grace (drain on SIGTERM and after a reload); 30s is its default")
	flag.StringVar(&o.logLevel, "log-level", "info", "each bridge's --log-level")
	flag.StringVar(&bridgeArgs, "bridge-args", "", "more flags for every bridge, space-separated (e.g. '--write-timeout 10s')")
	flag.DurationVar(&o.startTimeout, "start-timeout", 90*time.Second, "how long the stack may take to answer")
	flag.IntVar(&o.hello, "hello", 4, "hello clients per bridge")
	flag.IntVar(&o.uploads, "uploads", 1, "upload clients per bridge")
	flag.IntVar(&o.streams, "streams", 1, "stream clients per bridge")
	flag.IntVar(&o.bigs, "bigs", 1, "big-response clients per bridge")
	flag.Float64Var(&o.directShare, "direct", 0.25, "share of normal requests sent to bridge's --http instead of nginx")
	flag.DurationVar(&o.reqTimeout, "request-timeout", 90*time.Second, "client timeout of a normal request (longer than bridge's --timeout, so that bridge's answer shows)")
	flag.DurationVar(&o.pause, "pause", 5*time.Millisecond, "a normal client waits up to this long between requests")
	flag.IntVar(&o.slowReaders, "slow-readers", 1, "slow-reader attackers per bridge (each holds one connection at a time)")
	flag.IntVar(&o.slowUploaders, "slow-uploaders", 1, "slow-uploader attackers per bridge")
	flag.IntVar(&o.floods, "header-floods", 1, "header-flood attackers per bridge")
	flag.IntVar(&o.slowKiB, "slow-read-kib", 64<<10, "size of the response a slow reader asks for, KiB (larger than the socket buffers)")
	flag.DurationVar(&o.hold, "hold", 45*time.Second, "longest an attack connection is kept open")
	flag.DurationVar(&o.attackPause, "attack-pause", 4*time.Second, "mean pause between two slow attacks of one attacker")
	flag.DurationVar(&o.floodPause, "flood-pause", 500*time.Millisecond, "mean pause between two header floods")
	flag.DurationVar(&o.reloadMin, "reload-min", 20*time.Second, "shortest wait between reloads")
	flag.DurationVar(&o.reloadMax, "reload-max", 60*time.Second, "longest wait between reloads")
	flag.DurationVar(&o.killMin, "kill-min", 30*time.Second, "shortest wait between runner kills")
	flag.DurationVar(&o.killMax, "kill-max", 90*time.Second, "longest wait between runner kills")
	flag.DurationVar(&o.drain, "drain", 30*time.Second, "at the end, how long normal requests in flight may finish before they are cancelled")
	flag.DurationVar(&o.settle, "settle", 45*time.Second, "at the end, how long to wait for the bridges to go idle before the last sample")
	flag.DurationVar(&o.sampleEvery, "sample-every", 30*time.Second, "interval of the progress line and the timeline samples")
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock)")
	flag.Parse()
	o.runners = strings.Split(runners, ",")
	o.bridgeArgs = strings.Fields(bridgeArgs)
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o
}

func main() { os.Exit(run(parseFlags())) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(o *options) int {
	for _, p := range []*string{&o.bridge, &o.appsDir, &o.outDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			logf("%v", err)
			return 2
		}
		*p = abs
	}
	if _, err := os.Stat(o.bridge); err != nil {
		logf("no bridge binary (%v): run `make build`", err)
		return 2
	}
	if o.nginx == "" {
		logf("nginx not installed: run `make deps` (apt-get install nginx)")
		return 2
	}
	if _, err := os.Stat("/etc/nginx/uwsgi_params"); err != nil {
		logf("/etc/nginx/uwsgi_params missing: run `make deps` (apt-get install nginx)")
		return 2
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	logDir := filepath.Join(o.outDir, "soak-"+stamp)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		logf("%v", err)
		return 2
	}

	// The first SIGINT/SIGTERM ends the run early (report still written);
	// a second one stops the stack at once.
	runCtx, cancelRun := context.WithCancelCause(context.Background())
	defer cancelRun(nil)
	var st atomic.Pointer[stack]
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logf("%v: stopping the load (again to stop at once)", s)
		cancelRun(fmt.Errorf("interrupted (%v)", s))
		<-sigs
		logf("stopping every process now")
		if s := st.Load(); s != nil {
			s.kill()
			s.removeTemp()
		}
		os.Exit(130)
	}()

	logf("starting nginx and bridge for %s (logs in %s)", strings.Join(o.runners, ", "), logDir)
	s, err := startStack(runCtx, o, logDir)
	st.Store(s)
	if err != nil {
		logf("the stack did not start: %v", err)
		if s != nil {
			for _, n := range s.stop(o.grace) {
				logf("%s", n)
			}
			s.removeTemp()
		}
		return 2
	}
	startSnap := s.take()
	rep := &report{opts: o, stamp: stamp, logDir: logDir, start: startSnap, targets: s.targets}
	rep.version, rep.commit = versions(o.bridge)

	// A process of the stack that exits during the run ends it.
	var stopping atomic.Bool
	var died []string
	var diedMu sync.Mutex
	for _, p := range s.procs() {
		go func() {
			<-p.done
			if stopping.Load() {
				return
			}
			msg := fmt.Sprintf("%s (pid %d) exited during the run: %v", p.name, p.pid(), p.err)
			diedMu.Lock()
			died = append(died, msg)
			diedMu.Unlock()
			cancelRun(errors.New(msg))
		}()
	}

	rec, ch := newRecorder(), &chaos{}
	began := time.Now()
	stopAt := began.Add(o.duration)
	loadCtx, cancelLoad := context.WithDeadline(runCtx, stopAt) // attackers, chaos
	hard, cancelHard := context.WithCancel(runCtx)              // normal requests in flight
	defer cancelLoad()
	defer cancelHard()
	seed := o.seed
	next := func() uint64 { seed++; return seed }
	var normal, others sync.WaitGroup
	for _, t := range s.targets {
		for kind, n := range map[string]int{kindHello: o.hello, kindUpload: o.uploads, kindStream: o.streams, kindBig: o.bigs} {
			for range n {
				normal.Go(func() { client(hard, o, rec, t, kind, stopAt, next()) })
			}
		}
		for kind, n := range map[string]int{attackSlowRead: o.slowReaders, attackSlowUpload: o.slowUploaders, attackFlood: o.floods} {
			for range n {
				others.Go(func() { attacker(loadCtx, o, rec, t, kind, next()) })
			}
		}
	}
	killRng := rand.New(rand.NewPCG(next(), 1))
	others.Go(func() { ch.loop(loadCtx, s.targets, o.reloadMin, o.reloadMax, next(), reload) })
	others.Go(func() { ch.loop(loadCtx, s.targets, o.killMin, o.killMax, next(), killRunner(killRng)) })
	logf("load running for %s (seed %d)", o.duration, o.seed)

	tick := time.NewTicker(o.sampleEvery)
	for loadCtx.Err() == nil {
		select {
		case <-loadCtx.Done():
		case <-tick.C:
			snap := s.take()
			snap.OK = rec.okByRunner()
			rep.timeline = append(rep.timeline, snap)
			logf("%s", progress(time.Since(began), rec, ch.list(), snap))
		}
	}
	tick.Stop()
	rep.ran = time.Since(began)
	if cause := context.Cause(runCtx); cause != nil {
		rep.problems = append(rep.problems, "run ended early: "+cause.Error())
		logf("run ended early: %v", cause)
	}
	logf("load stopped after %s; waiting for the requests in flight (up to %s)", rep.ran.Round(time.Second), o.drain)
	others.Wait()
	waited := make(chan struct{})
	go func() { normal.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(o.drain):
		logf("%d request(s) still in flight after %s: cancelled", rec.inFlight(), o.drain)
		cancelHard()
		<-waited
	}
	if runCtx.Err() == nil {
		s.settle(o.workers, o.settle)
	}
	rep.end = s.take()
	rep.end.OK = rec.okByRunner()
	stopping.Store(true)
	logf("stopping nginx and the bridges")
	rep.stopNotes = s.stop(o.grace)
	s.removeTemp()
	diedMu.Lock()
	rep.problems = append(rep.problems, died...)
	diedMu.Unlock()

	rep.events = ch.list()
	rep.rec = rec
	for _, t := range s.targets {
		names := annotate(filepath.Join(logDir, "bridge-"+t.name+".log"), t.name, rec.fails)
		for i, e := range rep.events {
			if e.Runner == t.name && e.Kind == "kill" && names[e.PID] != "" {
				rep.events[i].Note = "worker " + names[e.PID] + ", " + e.Note
			}
		}
	}
	text := rep.markdown()
	path := filepath.Join(o.outDir, "soak-"+stamp+".md")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		logf("write %s: %v", path, err)
	}
	gzipLogs(logDir)
	fmt.Print(text)
	logf("report: %s", path)
	switch {
	case rep.unexplained > 0 || len(died) > 0:
		return 1
	case len(rep.problems) > 0: // interrupted: not a whole soak
		return 130
	}
	return 0
}

// settle waits (bounded) until every bridge has no request in flight and
// runs exactly workers runner processes, so that the end sample is of an
// idle stack, as the start one is.
func (s *stack) settle(workers int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		snap := s.take()
		idle := true
		for _, t := range s.targets {
			m := snap.Metrics[t.name]
			if m == nil || m["bridge_requests_in_flight"] != 0 || len(snap.of("runner", t.name)) != workers {
				idle = false
			}
		}
		if idle {
			return
		}
		time.Sleep(time.Second)
	}
	logf("the bridges were not idle after %s: the end sample is taken anyway", limit)
}

// progress is the line printed every --sample-every.
func progress(d time.Duration, rec *recorder, events []event, snap snapshot) string {
	rec.mu.Lock()
	sent, ok := 0, 0
	for _, r := range rec.normal {
		sent += r.Sent
		ok += r.OK
	}
	failed := len(rec.fails)
	attacks := 0
	for _, r := range rec.attacks {
		attacks += r.Attempts
	}
	rec.mu.Unlock()
	reloads, kills := 0, 0
	for _, e := range events {
		if e.Kind == "reload" {
			reloads++
		} else {
			kills++
		}
	}
	var g []string
	for name, m := range snap.Metrics {
		g = append(g, fmt.Sprintf("%s %.0f", name, m["go_goroutines"]))
	}
	return fmt.Sprintf("t=%s sent %d ok %d failed %d, attacks %d, reloads %d kills %d, goroutines: %s",
		d.Round(time.Second), sent, ok, failed, attacks, reloads, kills, strings.Join(g, ", "))
}

// versions returns bridge's version line and the repository's commit, best
// effort.
func versions(bridge string) (string, string) {
	v, _ := exec.Command(bridge, "version").Output()
	c, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	return strings.TrimSpace(string(v)), strings.TrimSpace(string(c))
}
