package main

import (
	"fmt"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// report is everything the markdown report shows.
type report struct {
	opts            *options
	stamp, logDir   string
	version, commit string
	targets         []*target
	ran             time.Duration
	start, end      snapshot
	timeline        []snapshot
	events          []event
	rec             *recorder
	problems        []string
	stopNotes       []string
	unexplained     int
}

var kindOrder = map[string]int{kindHello: 0, kindUpload: 1, kindStream: 2, kindBig: 3}

func (r *report) runnerIndex(name string) int {
	for i, t := range r.targets {
		if t.name == name {
			return i
		}
	}
	return len(r.targets)
}

func (r *report) sortedKeys(m map[rowKey]bool) []rowKey {
	keys := make([]rowKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Runner != b.Runner {
			return r.runnerIndex(a.Runner) < r.runnerIndex(b.Runner)
		}
		if a.Kind != b.Kind {
			ka, oka := kindOrder[a.Kind]
			kb, okb := kindOrder[b.Kind]
			if oka && okb {
				return ka < kb
			}
			return a.Kind < b.Kind
		}
		return a.Via > b.Via // nginx before direct
	})
	return keys
}

func (r *report) markdown() string {
	o := r.opts
	rec := r.rec
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r.unexplained = attribute(rec.fails, r.events)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("# Soak %s\n\n", r.stamp)
	w("%s (commit %s), %d CPUs; nginx in front of a bridge each for %s. Ran %s of %s asked; seed %d.\n\n",
		r.version, r.commit, runtime.NumCPU(), strings.Join(o.runners, ", "), r.ran.Round(time.Second), o.duration, o.seed)
	flags := strings.Join(append([]string{"--workers", fmt.Sprint(o.workers), "--grace", o.grace.String(),
		"--log-level", o.logLevel}, o.bridgeArgs...), " ")
	w("Per bridge: `%s`; normal clients: hello %d, upload %d, stream %d, big %d "+
		"(%.0f %% of requests direct to `--http`, the rest through nginx); attackers on `--http`: slow readers %d, "+
		"slow uploaders %d, header floods %d (through nginx too), each connection held at most %s. Reloads (SIGHUP) "+
		"every %s–%s, runner kills (SIGKILL) every %s–%s, each to a random bridge. Logs: `%s/`.\n\n",
		flags, o.hello, o.uploads, o.streams, o.bigs,
		o.directShare*100, o.slowReaders, o.slowUploaders, o.floods, o.hold,
		o.reloadMin, o.reloadMax, o.killMin, o.killMax, r.logDir)

	// totals
	var sent, ok, cancelled int
	for _, row := range rec.normal {
		sent += row.Sent
		ok += row.OK
		cancelled += row.Cancelled
	}
	failed := len(rec.fails)
	verdict := "PASS"
	if r.unexplained > 0 || len(r.problems) > 0 {
		verdict = "FAIL"
	}
	w("**%s**: %d normal requests sent, %d ok, %d failed: %d explained by a runner kill, **%d unexplained**",
		verdict, sent, ok, failed, failed-r.unexplained, r.unexplained)
	if cancelled > 0 {
		w("; %d cancelled by the soak's own stop", cancelled)
	}
	w(".\n")
	for _, p := range r.problems {
		w("\n- **%s**", p)
	}
	for _, p := range r.stopNotes {
		w("\n- stop: %s", p)
	}
	w("\n\n")

	// normal rows
	failedBy := map[rowKey][2]int{}
	for _, f := range rec.fails {
		k := rowKey{f.Runner, f.Kind, f.Via}
		c := failedBy[k]
		if f.Kill != nil {
			c[0]++
		} else {
			c[1]++
		}
		failedBy[k] = c
	}
	keys := map[rowKey]bool{}
	for k := range rec.normal {
		keys[k] = true
	}
	w("## Normal requests\n\n")
	w("Failed = a wrong status, a wrong or cut body, or a client error; explained = in flight at a SIGKILL of one of its bridge's runners (or, per bridge's log, sent to the killed process before bridge could know it was gone: up to 100 ms after). Latency of the requests that succeeded.\n\n")
	w("| bridge | kind | via | sent | ok | failed | explained | unexplained | cancelled | p50 ms | p99 ms | max ms |\n")
	w("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, k := range r.sortedKeys(keys) {
		row := rec.normal[k]
		c := failedBy[k]
		p50, p99, mx := percentiles(row.lat)
		w("| %s | %s | %s | %d | %d | %d | %d | %s | %d | %.1f | %.0f | %.0f |\n", k.Runner, k.Kind, k.Via,
			row.Sent, row.OK, c[0]+c[1], c[0], bold(c[1]), row.Cancelled, p50, p99, mx)
	}
	w("| **all** | | | %d | %d | %d | %d | %s | %d | | | |\n\n", sent, ok, failed, failed-r.unexplained, bold(r.unexplained), cancelled)

	if failed > 0 {
		r.failureCauses(&b, rec.fails)
	}
	if r.unexplained > 0 {
		r.unexplainedList(&b, rec.fails)
	}
	r.attacks(&b)
	r.eventTable(&b)
	r.processTable(&b)
	r.bridgeTable(&b)
	r.timelineTable(&b)
	return b.String()
}

func bold(n int) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("**%d**", n)
}

var digits = regexp.MustCompile(`[0-9]+`)

// failureCauses groups failures by bridge and reason, numbers blurred.
func (r *report) failureCauses(b *strings.Builder, fails []failure) {
	type key struct{ runner, reason string }
	count := map[key][3]int{}
	for _, f := range fails {
		k := key{f.Runner, digits.ReplaceAllString(f.Reason, "N")}
		c := count[k]
		if f.Kill != nil {
			c[0]++
		} else {
			c[1]++
			if f.Behind != "" {
				c[2]++
			}
		}
		count[k] = c
	}
	keys := make([]key, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ci, cj := count[keys[i]], count[keys[j]]
		return ci[0]+ci[1] > cj[0]+cj[1]
	})
	fmt.Fprintf(b, "### Why requests failed\n\nBehind an attack: unexplained failures whose worker (per bridge's log) had an attack request at the same time.\n\n")
	fmt.Fprintf(b, "| bridge | reason (numbers as N) | explained | unexplained | of them behind an attack |\n|---|---|--:|--:|--:|\n")
	for _, k := range keys {
		c := count[k]
		fmt.Fprintf(b, "| %s | %s | %d | %s | %d |\n", k.runner, cell(k.reason), c[0], bold(c[1]), c[2])
	}
	b.WriteString("\n")
}

// unexplainedList lists the first unexplained failures with the nearest
// event of their bridge.
func (r *report) unexplainedList(b *strings.Builder, fails []failure) {
	const most = 40
	fmt.Fprintf(b, "### Unexplained failures (first %d of %d)\n\n", min(most, r.unexplained), r.unexplained)
	b.WriteString("Times in seconds from the start of the load; `X-Request-Id` finds the request in the bridge's log.\n\n")
	b.WriteString("Behind: the attack request that had the same worker meanwhile (from the log); a request pipelined onto a worker waits for the one before it.\n\n")
	b.WriteString("| start s | took s | bridge | kind | via | request id | reason | bridge logged | behind | its bridge's reloads and kills while it was in flight |\n|--:|--:|---|---|---|---|---|---|---|---|\n")
	n := 0
	for _, f := range fails {
		if f.Kill != nil {
			continue
		}
		if n++; n > most {
			break
		}
		var during []string
		for _, e := range r.events {
			if e.Runner == f.Runner && e.At.After(f.Start) && e.At.Before(f.End) {
				during = append(during, fmt.Sprintf("%s of pid %d at %.3f", e.Kind, e.PID, r.secs(e.At)))
			}
		}
		near := strings.Join(during, "; ")
		if near == "" {
			near = "none in flight"
			if e := nearest(f, r.events); e != nil {
				near += fmt.Sprintf("; nearest: %s of pid %d at %.3f", e.Kind, e.PID, r.secs(e.At))
			}
		}
		logged := "–"
		if f.Logged != "" {
			logged = fmt.Sprintf("%s (pid %s): %s", f.Worker, pid(f.WorkerPID), f.Logged)
		}
		behind := f.Behind
		if behind == "" {
			behind = "–"
		}
		fmt.Fprintf(b, "| %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.secs(f.Start), f.End.Sub(f.Start).Seconds(),
			f.Runner, f.Kind, f.Via, f.ID, cell(f.Reason), cell(logged), behind, near)
	}
	b.WriteString("\n")
}

func (r *report) secs(t time.Time) float64 { return t.Sub(r.start.At).Seconds() }

func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }
