package cli

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// gcFloor is the least heap growth between two GCs. With GOGC=50 alone a
// small live heap (a few MiB while bridge serves small requests) meant a GC
// every ~2 MiB allocated, several per thousand requests: on hello at c=50
// GOGC 50 -> 200 cut Go CPU per request from 93-104 to 78-87 us.
const gcFloor = 8 << 20

// minGCPercent keeps GOGC=50's bound on a large live heap (1,000 open
// connections: ~18 MiB live, see tuneRuntime).
const minGCPercent = 50

// maxGCPercent bounds the growth allowed over a tiny live heap.
const maxGCPercent = 400

// gcPercentFor returns the GOGC that lets the heap grow by at least gcFloor
// over live bytes, but never below minGCPercent nor above maxGCPercent.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	p := int(gcFloor * 100 / live)
	return min(max(p, minGCPercent), maxGCPercent)
}

// gcTuner re-reads the live heap after every GC and sets GOGC from it
// (gcPercentFor): the heap goal is max(1.5 x live, live + 8 MiB), so a
// large heap keeps GOGC=50's memory bound and a small one is not collected
// every couple of MiB. It runs on the finalizer goroutine, once per GC.
// gcSentinel has a pointer so that it is never a tiny allocation, which
// may share its block with others and be finalized late or never.
type gcSentinel struct{ _ *gcTuner }

type gcTuner struct {
	sample  []metrics.Sample
	percent int
}

func startGCTuner() {
	t := &gcTuner{sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: minGCPercent}
	debug.SetGCPercent(minGCPercent)
	t.arm()
}

// arm attaches the tuner to a fresh sentinel: the sentinel becomes garbage
// at once, so its finalizer runs after the next GC, and re-arms.
func (t *gcTuner) arm() {
	s := &gcSentinel{}
	runtime.SetFinalizer(s, func(*gcSentinel) { t.tune(); t.arm() })
}

func (t *gcTuner) tune() {
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := gcPercentFor(t.sample[0].Value.Uint64())
	// Small changes are not worth the call (it takes the heap lock).
	if d := p - t.percent; d > t.percent/8 || -d > t.percent/8 {
		debug.SetGCPercent(p)
		t.percent = p
	}
}
