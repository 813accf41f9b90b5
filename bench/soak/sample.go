package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat is one process's resources at one moment.
type procStat struct {
	Role   string // "nginx master", "nginx worker", "bridge", "runner"
	Runner string // the bridge it belongs to ("" for nginx)
	PID    int
	Comm   string
	RSSKiB int64 // VmRSS
	FDs    int   // entries in /proc/PID/fd
}

// snapshot is every process of the stack and each bridge's metrics.
type snapshot struct {
	At      time.Time
	Procs   []procStat
	Metrics map[string]map[string]float64 // bridge name -> series -> value
	OK      map[string]int                // bridge name -> normal requests ok so far (set by the caller)
}

// rss reads VmRSS from /proc/PID/status, in KiB.
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// fds counts /proc/PID/fd.
func fds(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

func statOf(role, runner string, pid int, comm string) procStat {
	return procStat{Role: role, Runner: runner, PID: pid, Comm: comm, RSSKiB: rss(pid), FDs: fds(pid)}
}

// take samples the stack now: nginx's master and workers, each bridge and
// its current runner processes, and each bridge's /metrics.
func (s *stack) take() snapshot {
	snap := snapshot{At: time.Now(), Metrics: map[string]map[string]float64{}}
	if s.nginx != nil && s.nginx.alive() {
		snap.Procs = append(snap.Procs, statOf("nginx master", "", s.nginx.pid(), "nginx"))
		for _, w := range children(s.nginx.pid()) {
			snap.Procs = append(snap.Procs, statOf("nginx worker", "", w.PID, w.Comm))
		}
	}
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, t := range s.targets {
		if !t.proc.alive() {
			continue
		}
		snap.Procs = append(snap.Procs, statOf("bridge", t.name, t.proc.pid(), "bridge"))
		for _, k := range children(t.proc.pid()) {
			snap.Procs = append(snap.Procs, statOf("runner", t.name, k.PID, k.Comm))
		}
		if m, err := scrape(cl, "http://"+t.adminAddr+"/metrics"); err == nil {
			snap.Metrics[t.name] = m
		}
	}
	return snap
}

// scrape reads a Prometheus text page into series -> value, the series
// being the name with its labels as printed (bridge_reloads_total{result="ok"}).
func scrape(cl *http.Client, url string) (map[string]float64, error) {
	resp, err := cl.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body), nil
}

func parseMetrics(r io.Reader) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// sumPrefix adds every series whose name and labels start with prefix.
func sumPrefix(m map[string]float64, prefix string) float64 {
	var t float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			t += v
		}
	}
	return t
}

// of returns the stats of one role of one bridge ("" for nginx's).
func (s snapshot) of(role, runner string) []procStat {
	var out []procStat
	for _, p := range s.Procs {
		if p.Role == role && p.Runner == runner {
			out = append(out, p)
		}
	}
	return out
}
