package main

import (
	"sort"
	"time"
)

// event is something the soak did to a bridge: a reload (SIGHUP) or the
// SIGKILL of one of its runner processes.
type event struct {
	At     time.Time
	Runner string // the bridge's name: python, perl, ruby
	Kind   string // "reload" or "kill"
	PID    int    // the process signalled
	Note   string // what went wrong, if anything (no runner to kill…)
	// Gone is when a killed runner was seen gone from /proc (or a zombie):
	// requests sent to it until then may have reached it. Zero: not seen.
	Gone time.Time
}

// failure is a normal request that did not get the whole, correct answer.
type failure struct {
	Runner, Kind, Via string
	ID                string // X-Request-Id sent
	Start, End        time.Time
	Reason            string
	// What bridge's log says about the request, when it says anything:
	// the worker that had it, that worker's pid, and the status and error
	// bridge logged.
	Worker    string
	WorkerPID int
	Logged    string
	// Behind is the attack request (slow reader, slow uploader, header
	// flood) that had the same worker for the longest while this one was
	// in flight, if any: a request pipelined behind it waits for it.
	Behind string
	// Kill is the runner kill that explains the failure, if any (set by
	// attribute).
	Kill *event
}

// noticeWindow is how long after a killed runner is gone bridge may still
// send it a request: until its connection's end has been read.
const noticeWindow = 100 * time.Millisecond

// explainedBy returns the first kill of f's bridge that happened while f
// was in flight: f started before the killed runner was gone (the SIGKILL
// takes a few milliseconds to end a process, and a request sent meanwhile
// reaches it) and ended after the SIGKILL was sent. When bridge's log names
// the worker that had the request, the kill must be of that worker's
// process; a request the log puts on the killed process itself may also
// have started up to noticeWindow after it was gone. Only a kill explains a failure; a reload is meant to lose
// nothing.
func explainedBy(f failure, events []event) *event {
	for i := range events {
		e := &events[i]
		if e.Kind != "kill" || e.Runner != f.Runner || e.PID == 0 {
			continue
		}
		if f.WorkerPID != 0 && f.WorkerPID != e.PID {
			continue
		}
		gone := e.Gone
		if gone.Before(e.At) {
			gone = e.At
		}
		if !f.End.After(e.At) {
			continue
		}
		if f.Start.Before(gone) {
			return e
		}
		// Bridge's log says the request went to the killed process itself,
		// sent before bridge could know: the end of the runner's socket
		// reaches bridge's reader some time after the process is gone.
		if f.WorkerPID == e.PID && f.Start.Before(gone.Add(noticeWindow)) {
			return e
		}
	}
	return nil
}

// attribute sets Kill on every failure that a runner kill explains and
// returns how many failures are left unexplained.
func attribute(fails []failure, events []event) (unexplained int) {
	for i := range fails {
		fails[i].Kill = explainedBy(fails[i], events)
		if fails[i].Kill == nil {
			unexplained++
		}
	}
	return unexplained
}

// nearest returns the event of f's bridge closest in time to f's end, any
// kind, for the report's "nearest event" column; nil if there is none.
func nearest(f failure, events []event) *event {
	var best *event
	var bestD time.Duration
	for i := range events {
		e := &events[i]
		if e.Runner != f.Runner {
			continue
		}
		d := f.End.Sub(e.At)
		if d < 0 {
			d = -d
		}
		if best == nil || d < bestD {
			best, bestD = e, d
		}
	}
	return best
}

// sortEvents orders events by time.
func sortEvents(events []event) {
	sort.SliceStable(events, func(i, j int) bool { return events[i].At.Before(events[j].At) })
}
