package supervise

import "time"

// WorkerState is one worker as operators see it (metrics, readiness).
type WorkerState struct {
	Name  string
	PID   int
	State string // idle, busy, suspended, draining, backoff, starting
	RSS   int64  // bytes, whole process group; 0 if unknown
}

// States lists the supervisor's workers, and the slots waiting for one.
// rss is groupRSS's answer, taken once for all supervisors.
func (s *Supervisor) States(rss map[int]int64) []WorkerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []WorkerState
	for i := range s.cfg.Workers {
		sw := s.running[i]
		if sw == nil {
			st := "starting"
			if until, ok := s.waiting[i]; ok && time.Now().Before(until) {
				st = "backoff" // crash loop: waiting before the next start
			}
			if !s.draining {
				out = append(out, WorkerState{Name: s.workerName(i, 0), State: st})
			}
			continue
		}
		pid := sw.proc.PID()
		busy, suspended := s.pool.Load(sw.w)
		st := "idle"
		switch {
		case s.draining:
			st = "draining"
		case suspended:
			st = "suspended"
		case busy > 0:
			st = "busy"
		}
		out = append(out, WorkerState{Name: sw.w.Name, PID: pid, State: st, RSS: rss[pid]})
	}
	return out
}
