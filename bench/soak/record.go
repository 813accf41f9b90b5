package main

import (
	"sort"
	"sync"
	"time"
)

// rowKey names a row of the report: a bridge, a kind of request or attack,
// and the way in ("nginx": through nginx's uwsgi_pass, "direct": bridge's
// --http).
type rowKey struct{ Runner, Kind, Via string }

// normalRow counts the normal requests of one row. Sent = OK + failed +
// Cancelled (those the soak itself abandoned when it stopped).
type normalRow struct {
	Sent, OK, Cancelled int
	lat                 []float32 // ms, of the requests that succeeded
}

// outcome is how an attack ended:
//
//	served    a complete 2xx answer
//	rejected  408, 413 or 431 (bridge's documented refusals), or 400
//	cut       the server closed or reset the connection before a full answer
//	held      the connection was still open when the client's hold limit ended
//	other     any other status (503, 504…)
//	error     the client could not even connect
type outcome struct {
	Kind   string
	Status int
	Held   time.Duration // how long the connection lasted
}

var outcomeKinds = []string{"served", "rejected", "cut", "held", "other", "error"}

// attackRow counts one row of attacks.
type attackRow struct {
	Attempts int
	Outcomes map[string]int
	Statuses map[int]int
	Held     time.Duration // summed over attempts
}

// recorder collects every result; safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	normal  map[rowKey]*normalRow
	attacks map[rowKey]*attackRow
	fails   []failure
}

func newRecorder() *recorder {
	return &recorder{normal: map[rowKey]*normalRow{}, attacks: map[rowKey]*attackRow{}}
}

func (r *recorder) row(k rowKey) *normalRow {
	row := r.normal[k]
	if row == nil {
		row = &normalRow{}
		r.normal[k] = row
	}
	return row
}

// sent counts a request as it starts.
func (r *recorder) sent(k rowKey) {
	r.mu.Lock()
	r.row(k).Sent++
	r.mu.Unlock()
}

func (r *recorder) ok(k rowKey, d time.Duration) {
	r.mu.Lock()
	row := r.row(k)
	row.OK++
	row.lat = append(row.lat, float32(d.Seconds()*1000))
	r.mu.Unlock()
}

func (r *recorder) cancelled(k rowKey) {
	r.mu.Lock()
	r.row(k).Cancelled++
	r.mu.Unlock()
}

func (r *recorder) failed(f failure) {
	r.mu.Lock()
	r.fails = append(r.fails, f)
	r.mu.Unlock()
}

func (r *recorder) attack(k rowKey, o outcome) {
	r.mu.Lock()
	row := r.attacks[k]
	if row == nil {
		row = &attackRow{Outcomes: map[string]int{}, Statuses: map[int]int{}}
		r.attacks[k] = row
	}
	row.Attempts++
	row.Outcomes[o.Kind]++
	if o.Status != 0 {
		row.Statuses[o.Status]++
	}
	row.Held += o.Held
	r.mu.Unlock()
}

// inFlight returns the normal requests started and not yet finished.
func (r *recorder) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	done := len(r.fails)
	sent := 0
	for _, row := range r.normal {
		sent += row.Sent
		done += row.OK + row.Cancelled
	}
	return sent - done
}

// percentiles returns the p50, p99 and max of ms.
func percentiles(ms []float32) (p50, p99, max float64) {
	if len(ms) == 0 {
		return 0, 0, 0
	}
	s := append([]float32(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) }
	return at(0.5), at(0.99), float64(s[len(s)-1])
}

// okByRunner returns the normal requests that succeeded so far, per bridge.
func (r *recorder) okByRunner() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, row := range r.normal {
		out[k.Runner] += row.OK
	}
	return out
}
