package supervise

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// groupRSS returns the resident memory in bytes of every process group on
// the machine, from /proc/*/stat. A runner leads its own group (Setpgid), so
// its entry covers the interpreter and whatever the app forked or spawned:
// "the whole process tree" even when children were re-parented.
func groupRSS() map[int]int64 {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	page := int64(os.Getpagesize())
	out := make(map[int]int64)
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process exited meanwhile
		}
		pgrp, rss, ok := parseStat(b)
		if ok {
			out[pgrp] += rss * page
		}
	}
	return out
}

// parseStat takes the process group (field 5) and RSS in pages (field 24)
// from a /proc/PID/stat line. The command name (field 2) may contain spaces
// and parentheses, so fields are counted from its closing parenthesis.
func parseStat(b []byte) (pgrp int, rssPages int64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 22 {
		return 0, 0, false
	}
	g, err1 := strconv.Atoi(string(f[2]))
	r, err2 := strconv.ParseInt(string(f[21]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return g, r, true
}

// watchRSS flags workers whose process group passes MaxRSS; their watch
// loops then recycle them like any other limit.
func (s *Supervisor) watchRSS() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stopWatch:
			return
		case <-tick.C:
		}
		rss := groupRSS()
		s.mu.Lock()
		for i, sw := range s.running {
			if used := rss[sw.proc.PID()]; used > s.cfg.MaxRSS && !sw.overRSS.Load() {
				s.cfg.Log.Warn().Str("worker", sw.w.Name).Int64("rss_bytes", used).
					Int64("max_rss_bytes", s.cfg.MaxRSS).Msg("worker uses more memory than --max-rss")
				sw.overRSS.Store(true)
				select {
				case s.pokes[i] <- struct{}{}:
				default:
				}
			}
		}
		s.mu.Unlock()
	}
}
