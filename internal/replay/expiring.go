package replay

import (
	"container/heap"
	"crypto/sha256"
	"math"
	"time"
)

type hashedKey = [sha256.Size]byte

// expiring holds values under hashed keys until they expire: Memory keeps
// its claims in one and its records in another. It is laid out for the
// collector as much as for lookups. The map's keys and expiries and the
// whole expiry heap hold no pointers, so the collector neither scans the
// heap nor follows an object per entry; only a value's own pointers (a
// record's bytes) are followed, and a claim's value has none. With an
// object an entry, each pointed to from the map and the heap, a store
// keeping 100,000 grants for release cost the collector 15.4 ms a cycle;
// so laid out, 8.8 ms (BenchmarkCollectorWithGrants).
//
// The heap is lazy: remove deletes from the map only, and the stale
// (expiry, key) it leaves is skipped when it comes up, or dropped when the
// heap is rebuilt from the map, which add does once stale entries
// outnumber live ones (plus some slack, so a small store never rebuilds).
type expiring[V any] struct {
	m    map[hashedKey]timed[V]
	heap dueHeap
}

type timed[V any] struct {
	at int64 // expiry, Unix nanoseconds
	v  V
}

// unixNano is t in Unix nanoseconds, saturated. A time past 2262 does not
// fit, and UnixNano would wrap it into the past: an expiry so far off (no
// token's, but the store does not choose its callers' times) would then
// let its key be claimed again at once.
func unixNano(t time.Time) int64 {
	const limit = math.MaxInt64 / int64(time.Second)
	switch s := t.Unix(); {
	case s >= limit:
		return math.MaxInt64
	case s <= -limit:
		return math.MinInt64
	}
	return t.UnixNano()
}

// due is one expiry in the heap.
type due struct {
	at  int64
	key hashedKey
}

// staleSlack is how many stale heap entries add tolerates beyond as many
// as there are live ones.
const staleSlack = 1024

func newExpiring[V any]() expiring[V] { return expiring[V]{m: map[hashedKey]timed[V]{}} }

func (e *expiring[V]) len() int { return len(e.m) }

// live returns k's value unless k holds nothing or its value expired at
// now (Unix nanoseconds).
func (e *expiring[V]) live(k hashedKey, now int64) (V, bool) {
	t, ok := e.m[k]
	if !ok || t.at <= now {
		var zero V
		return zero, false
	}
	return t.v, true
}

// add puts v under k until at, replacing whatever k held.
func (e *expiring[V]) add(k hashedKey, v V, at int64) {
	e.m[k] = timed[V]{at: at, v: v}
	// Appended and fixed in place rather than heap.Push'ed, which would box
	// the due into an interface: an allocation each time.
	e.heap = append(e.heap, due{at: at, key: k})
	heap.Fix(&e.heap, len(e.heap)-1)
	if len(e.heap) > 2*len(e.m)+staleSlack {
		e.rebuild()
	}
}

// replace sets k's value and keeps its expiry. It returns the value it
// replaced, and false, changing nothing, when k holds nothing.
func (e *expiring[V]) replace(k hashedKey, v V) (V, bool) {
	t, ok := e.m[k]
	if !ok {
		return t.v, false
	}
	e.m[k] = timed[V]{at: t.at, v: v}
	return t.v, true
}

// remove forgets k and returns what it held.
func (e *expiring[V]) remove(k hashedKey) (V, bool) {
	t, ok := e.m[k]
	if ok {
		delete(e.m, k)
	}
	return t.v, ok
}

// sweep removes every value expired at now, oldest first, and hands each
// to removed.
func (e *expiring[V]) sweep(now int64, removed func(V)) {
	for len(e.heap) > 0 && e.heap[0].at <= now {
		d := e.pop()
		if t, ok := e.m[d.key]; ok && t.at == d.at {
			delete(e.m, d.key)
			if removed != nil {
				removed(t.v)
			}
		}
	}
}

// oldest returns the earliest expiry of the values held, dropping stale
// heap entries in its way; false when nothing is held.
func (e *expiring[V]) oldest() (int64, bool) {
	for len(e.heap) > 0 {
		d := e.heap[0]
		if t, ok := e.m[d.key]; ok && t.at == d.at {
			return d.at, true
		}
		e.pop()
	}
	return 0, false
}

// pop removes and returns the heap's earliest entry, without boxing it.
func (e *expiring[V]) pop() due {
	h := e.heap
	top := h[0]
	last := len(h) - 1
	h.Swap(0, last)
	e.heap = h[:last]
	if last > 0 {
		heap.Fix(&e.heap, 0)
	}
	return top
}

// rebuild makes the heap again from the map: one entry a value, none
// stale, in a slice no larger than it needs.
func (e *expiring[V]) rebuild() {
	h := make(dueHeap, 0, len(e.m))
	for k, t := range e.m {
		h = append(h, due{at: t.at, key: k})
	}
	heap.Init(&h)
	e.heap = h
}

// dueHeap is a min-heap of expiries for container/heap. expiring pushes
// and pops with append, Swap and heap.Fix; Push and Pop complete the
// interface.
type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}
