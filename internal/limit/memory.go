package limit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DefaultMaxKeys bounds a Memory limiter. A bucket costs its key and a
// timestamp, some 100 bytes: 100,000 is about 10 MB, far more clients than
// send a broker requests at once.
const DefaultMaxKeys = 100_000

// Sweeps drop buckets that have refilled. They run at most once a minute
// on their own, and when the limiter is full at most once a second, so a
// flood of new keys at the cap costs a map look-up each, not a scan.
const (
	sweepEvery   = time.Minute
	fullSweepGap = time.Second
)

// Memory is a Limiter held in this process. It is safe for concurrent use.
// It holds at most its maximum of buckets; at the cap a request for a key
// it has no bucket for is refused with ErrFull (see there), while keys it
// has keep being served.
type Memory struct {
	mu    sync.Mutex
	now   func() time.Time
	max   int
	tat   map[string]time.Time
	swept time.Time
	// earliest is when the first bucket left by the last sweep refills,
	// so a full limiter can say when to come back.
	earliest time.Time
}

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) MemoryOption { return func(m *Memory) { m.now = now } }

// WithMaxKeys sets how many buckets the limiter holds (default
// DefaultMaxKeys; a value below 1 keeps the default).
func WithMaxKeys(n int) MemoryOption {
	return func(m *Memory) {
		if n > 0 {
			m.max = n
		}
	}
}

// NewMemory returns an empty limiter.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, max: DefaultMaxKeys, tat: map[string]time.Time{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Take implements Limiter.
func (m *Memory) Take(ctx context.Context, buckets ...Bucket) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("rate limit: %w", err)
	}
	buckets, index := live(buckets)
	if len(buckets) == 0 {
		return allowed, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if now.Sub(m.swept) >= sweepEvery {
		m.sweep(now)
	}
	res := allowed
	next := make([]time.Time, len(buckets))
	added := 0
	for i, b := range buckets {
		tat, ok := m.tat[b.Key]
		if !ok {
			added++
		}
		var over time.Duration
		next[i], over = gcra(tat, now, b.Rate)
		if over > res.Wait {
			res = Result{Wait: over, Limited: index[i]}
		}
	}
	if !res.Allowed() {
		return res, nil
	}
	if added > 0 && len(m.tat)+added > m.max {
		if now.Sub(m.swept) >= fullSweepGap {
			m.sweep(now)
		}
		if len(m.tat)+added > m.max {
			return Result{Wait: max(m.earliest.Sub(now), fullSweepGap), Limited: -1}, fmt.Errorf("%w (%d buckets)", ErrFull, len(m.tat))
		}
	}
	for i, b := range buckets {
		m.tat[b.Key] = next[i]
	}
	return res, nil
}

// Len returns the number of buckets held, refilled ones not yet swept
// included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// sweep drops every bucket that has refilled by now: it is the same as no
// bucket.
func (m *Memory) sweep(now time.Time) {
	m.earliest = time.Time{}
	for k, tat := range m.tat {
		if !tat.After(now) {
			delete(m.tat, k)
		} else if m.earliest.IsZero() || tat.Before(m.earliest) {
			m.earliest = tat
		}
	}
	m.swept = now
}
