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
	w("Failed = a wrong status, a wrong or cut body, or a client error; explained = in flight at a SIGKILL of one of its bridge's runners. Latency of the requests that succeeded.\n\n")
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

func (r *report) attacks(b *strings.Builder) {
	keys := map[rowKey]bool{}
	for k := range r.rec.attacks {
		keys[k] = true
	}
	b.WriteString("## Attacks\n\n")
	b.WriteString("Not counted as failures. served: a full 2xx answer; rejected: 408/413/431 (or 400 from nginx); " +
		"cut: the server closed the connection first; held: still open at the client's limit " +
		fmt.Sprintf("(%s); other: any other status. ", r.opts.hold) +
		"slow_read: `GET /big` of " + fmt.Sprintf("%d MiB", r.opts.slowKiB>>10) + ", reading nothing (none) or 1 byte/s after the head (1Bps); " +
		"slow_upload: the head at 1 byte/s (head), the body at 1 byte/s (body), 80 KiB at once then 1 byte/s (body64k) or then nothing (stall); " +
		"header_flood: 200–4,000 header fields direct, 200–1,000 short ones through nginx.\n\n")
	b.WriteString("| bridge | attack | via | attempts | served | rejected | cut | held | other | error | mean s open | statuses |\n")
	b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, k := range r.sortedKeys(keys) {
		row := r.rec.attacks[k]
		var sts []string
		codes := make([]int, 0, len(row.Statuses))
		for c := range row.Statuses {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			sts = append(sts, fmt.Sprintf("%d×%d", c, row.Statuses[c]))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d |", k.Runner, k.Kind, k.Via, row.Attempts)
		for _, oc := range outcomeKinds {
			fmt.Fprintf(b, " %d |", row.Outcomes[oc])
		}
		fmt.Fprintf(b, " %.1f | %s |\n", row.Held.Seconds()/float64(max(row.Attempts, 1)), strings.Join(sts, " "))
	}
	b.WriteString("\n")
}

func (r *report) eventTable(b *strings.Builder) {
	b.WriteString("## Reloads and runner kills\n\n")
	b.WriteString("A kill's note gives how long the runner took to be gone from /proc after the SIGKILL.\n\n")
	b.WriteString("| t s | bridge | event | pid | note |\n|--:|---|---|--:|---|\n")
	for _, e := range r.events {
		note := e.Note
		if !e.Gone.IsZero() {
			note = fmt.Sprintf("%s; gone after %.1f ms", note, e.Gone.Sub(e.At).Seconds()*1000)
		}
		fmt.Fprintf(b, "| %.3f | %s | %s | %d | %s |\n", r.secs(e.At), e.Runner, e.Kind, e.PID, cell(note))
	}
	if len(r.events) == 0 {
		b.WriteString("| | | none | | |\n")
	}
	b.WriteString("\n")
}

func mib(kib int64) string {
	if kib < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(kib)/1024)
}

func (r *report) processTable(b *strings.Builder) {
	b.WriteString("## Processes, start → end\n\n")
	b.WriteString("Start: the stack idle before the load. End: after the load, once every bridge had no request in flight " +
		"and its --workers runners (or after --settle). Runners are the bridge's child processes at that moment " +
		"(new pids after reloads and kills), paired by order.\n\n")
	b.WriteString("| process | pid start | pid end | RSS MiB start | RSS MiB end | fds start | fds end |\n|---|--:|--:|--:|--:|--:|--:|\n")
	row := func(label string, s, e []procStat) {
		for i := 0; i < max(len(s), len(e)); i++ {
			name := label
			if len(s) > 1 || len(e) > 1 {
				name = fmt.Sprintf("%s %d", label, i+1)
			}
			var ps, pe procStat
			ps.RSSKiB, pe.RSSKiB, ps.FDs, pe.FDs = -1, -1, -1, -1
			if i < len(s) {
				ps = s[i]
			}
			if i < len(e) {
				pe = e[i]
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, pid(ps.PID), pid(pe.PID),
				mib(ps.RSSKiB), mib(pe.RSSKiB), num(ps.FDs), num(pe.FDs))
		}
	}
	row("nginx master", r.start.of("nginx master", ""), r.end.of("nginx master", ""))
	row("nginx worker", r.start.of("nginx worker", ""), r.end.of("nginx worker", ""))
	for _, t := range r.targets {
		row("bridge "+t.name, r.start.of("bridge", t.name), r.end.of("bridge", t.name))
		row(t.name+" runner", r.start.of("runner", t.name), r.end.of("runner", t.name))
	}
	b.WriteString("\n")
}

func pid(p int) string {
	if p == 0 {
		return "–"
	}
	return fmt.Sprint(p)
}

func num(n int) string {
	if n < 0 {
		return "–"
	}
	return fmt.Sprint(n)
}

func (r *report) bridgeTable(b *strings.Builder) {
	b.WriteString("## Bridges, start → end\n\n")
	b.WriteString("From each bridge's `/metrics` (`go_goroutines`, `bridge_*`) at start and end; reloads and kills sent by the soak.\n\n")
	b.WriteString("| bridge | goroutines start | goroutines end | in flight end | queue end | workers ready end | reloads sent | reloads ok / failed | kills sent | worker restarts | requests by status |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|---|--:|---|---|\n")
	for _, t := range r.targets {
		ms, me := r.start.Metrics[t.name], r.end.Metrics[t.name]
		reloads, kills := 0, 0
		for _, e := range r.events {
			if e.Runner == t.name && e.PID != 0 {
				if e.Kind == "reload" {
					reloads++
				} else {
					kills++
				}
			}
		}
		get := func(m map[string]float64, k string) string {
			if m == nil {
				return "–"
			}
			v, ok := m[k]
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %d | %s / %s | %d | %s | %s |\n", t.name,
			get(ms, "go_goroutines"), get(me, "go_goroutines"), get(me, "bridge_requests_in_flight"),
			get(me, "bridge_queue_depth"), get(me, "bridge_workers_ready"), reloads,
			get(me, `bridge_reloads_total{result="ok"}`), get(me, `bridge_reloads_total{result="failed"}`), kills,
			labelled(me, "bridge_worker_restarts_total", "reason"), byCode(me))
	}
	b.WriteString("\n")
}

// labelled lists a counter's series as label=value, e.g. "crash 3, reload 8".
func labelled(m map[string]float64, name, label string) string {
	var parts []string
	prefix := name + "{" + label + `="`
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", strings.SplitN(rest, `"`, 2)[0], v))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// byCode sums bridge_requests_total by status code.
func byCode(m map[string]float64) string {
	codes := map[string]float64{}
	for k, v := range m {
		if !strings.HasPrefix(k, "bridge_requests_total{") {
			continue
		}
		if i := strings.Index(k, `code="`); i >= 0 {
			codes[strings.SplitN(k[i+6:], `"`, 2)[0]] += v
		}
	}
	keys := make([]string, 0, len(codes))
	for c := range codes {
		keys = append(keys, c)
	}
	sort.Strings(keys)
	var parts []string
	for _, c := range keys {
		parts = append(parts, fmt.Sprintf("%s×%.0f", c, codes[c]))
	}
	return strings.Join(parts, " ")
}

func (r *report) timelineTable(b *strings.Builder) {
	snaps := append(append([]snapshot{r.start}, r.timeline...), r.end)
	b.WriteString("## Timeline\n\nEvery sample: per bridge, the normal requests that succeeded since the last sample (a stall shows as a small number), " +
		"its RSS MiB / fds / goroutines, and its runners' count and summed RSS MiB; nginx's summed RSS MiB.\n\n| t s |")
	for _, t := range r.targets {
		fmt.Fprintf(b, " %s ok | bridge %s | %s runners |", t.name, t.name, t.name)
	}
	b.WriteString(" nginx |\n|--:|")
	for range r.targets {
		b.WriteString("--:|---|---|")
	}
	b.WriteString("--:|\n")
	for i, s := range snaps {
		label := fmt.Sprintf("%.0f", r.secs(s.At))
		if i == 0 {
			label = "start"
		} else if i == len(snaps)-1 {
			label = fmt.Sprintf("end (%.0f)", r.secs(s.At))
		}
		fmt.Fprintf(b, "| %s |", label)
		for _, t := range r.targets {
			if i == 0 {
				b.WriteString(" |")
			} else {
				fmt.Fprintf(b, " %d |", s.OK[t.name]-snaps[i-1].OK[t.name])
			}
			br := s.of("bridge", t.name)
			g := "–"
			if m := s.Metrics[t.name]; m != nil {
				g = fmt.Sprintf("%.0f", m["go_goroutines"])
			}
			if len(br) == 1 {
				fmt.Fprintf(b, " %s / %d / %s |", mib(br[0].RSSKiB), br[0].FDs, g)
			} else {
				b.WriteString(" gone |")
			}
			rs := s.of("runner", t.name)
			var sum int64
			for _, p := range rs {
				sum += max(p.RSSKiB, 0)
			}
			fmt.Fprintf(b, " %d, %s |", len(rs), mib(sum))
		}
		var ng int64
		for _, p := range append(s.of("nginx master", ""), s.of("nginx worker", "")...) {
			ng += max(p.RSSKiB, 0)
		}
		fmt.Fprintf(b, " %s |\n", mib(ng))
	}
	b.WriteString("\n")
}
