package exchange

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per client address. Buckets idle longer than
// idleTTL are dropped, so a scan from many addresses cannot grow it forever.
type limiter struct {
	perSecond rate.Limit
	burst     int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

const idleTTL = 10 * time.Minute

func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	return &limiter{perSecond: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// allow returns 0 when the request may go ahead, or how long to wait.
func (l *limiter) allow(key string, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleTTL {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > idleTTL {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{l: rate.NewLimiter(l.perSecond, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}
