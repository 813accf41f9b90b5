package main

import (
	"fmt"
	"sort"
	"strings"
)

// The report's tables after the normal requests: attacks, events,
// processes, bridges, timeline.

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
