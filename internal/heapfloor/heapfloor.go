// Package heapfloor keeps the Go collector from running on a small heap
// far more often than its work needs.
//
// The collector's goal is twice the live heap (GOGC=100), and never less
// than 4 MiB. A broker with a handful of policies holds 2 – 3 MiB live, so
// at thousands of requests a second, each leaving tens of kilobytes of
// garbage, it collected some fifty times a second, each cycle with its
// fixed costs (two pauses, starting the mark workers, sweeping); a larger
// goal gave the refusal path an eighth more throughput
// (docs/performance.md). Keep raises GOGC while the live
// heap is small, so that the goal stays at the floor, and lets it fall back
// as the heap grows: a broker whose live heap is past half the floor (ten
// thousand policies, many grants kept for release) collects exactly as it
// would without it. Its resident set so grows by at most the floor, once;
// GOMEMLIMIT, when set, still bounds it.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Default is the floor `ferry serve` keeps: a quarter of the 64 MiB the
// Helm chart requests, and the goal GOGC=400 would give a small heap.
const Default = 16 << 20

// defaultHeapMinimum is the Go runtime's own floor for GOGC=100, which it
// scales with GOGC: at GOGC=400 no goal is below 16 MiB. Percent keeps the
// scaled minimum at or under the floor asked for.
const defaultHeapMinimum = 4 << 20

// Percent is the GOGC that puts the collector's goal for a live heap of
// live bytes at floor, never below base (the percent in force without a
// floor) and never so high that the runtime's own minimum, scaled with it,
// passes the floor.
func Percent(live, floor uint64, base int) int {
	top := int(floor * 100 / defaultHeapMinimum)
	if base >= top {
		return base
	}
	if live == 0 {
		return top
	}
	p := int((floor*100+live-1)/live) - 100 // the goal live×(1+p/100) reaches floor
	return min(max(p, base), top)
}

// Keep holds the collector's goal at floor or more until stop is called,
// adjusting GOGC after each collection to the live heap it found, and
// then restores the GOGC it started with. A GOGC of off (negative) is
// left alone.
func Keep(floor uint64) (stop func()) {
	base := currentPercent()
	if base < 0 {
		return func() {}
	}
	k := &keeper{floor: floor, base: base, percent: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	k.adjust()
	k.arm()
	return k.stop
}

type keeper struct {
	floor uint64
	base  int

	mu      sync.Mutex
	stopped bool
	percent int
	sample  []metrics.Sample
}

// arm attaches the next adjustment to an object nothing references, so it
// runs once the next collection has found it unreachable.
func (k *keeper) arm() {
	runtime.AddCleanup(new(sentinel), func(k *keeper) {
		if k.adjust() {
			k.arm()
		}
	}, k)
}

// sentinel is large enough to get an allocation of its own: a cleanup on
// an object in the tiny allocator's shared blocks may never run.
type sentinel struct{ _ [16]byte }

// adjust sets GOGC for the live heap the last collection left, and says
// whether to go on.
func (k *keeper) adjust() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return false
	}
	metrics.Read(k.sample)
	live := uint64(0)
	if k.sample[0].Value.Kind() == metrics.KindUint64 {
		live = k.sample[0].Value.Uint64()
	}
	if p := Percent(live, k.floor, k.base); p != k.percent {
		debug.SetGCPercent(p)
		k.percent = p
	}
	return true
}

func (k *keeper) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.stopped = true
	debug.SetGCPercent(k.base)
}

func currentPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100
	}
	return int(int64(s[0].Value.Uint64()))
}
