// Package limit rate-limits requests with GCRA, the generic cell rate
// algorithm: a token bucket kept as one timestamp per key (the theoretical
// arrival time of the next request), so a bucket costs one value, a full
// bucket is the same as no bucket and can be forgotten, and the whole
// decision is one comparison. Memory keeps the buckets in this process;
// Redis keeps them in Redis, so that replicas share them.
package limit

import (
	"context"
	"errors"
	"math"
	"time"
)

// Rate is a bucket's size and refill.
type Rate struct {
	// Every is how long one request's allowance takes to come back: a
	// minute for 1 a minute.
	Every time.Duration
	// Burst is how many requests may come at once from a full bucket.
	Burst int
}

// PerSecond is n requests a second, burst at once; a non-positive n is the
// zero Rate, which never limits.
func PerSecond(n float64, burst int) Rate { return per(time.Second, n, burst) }

// PerMinute is n requests a minute, burst at once.
func PerMinute(n float64, burst int) Rate { return per(time.Minute, n, burst) }

func per(unit time.Duration, n float64, burst int) Rate {
	if !(n > 0) || math.IsInf(n, 0) {
		return Rate{}
	}
	every := time.Duration(math.Ceil(float64(unit) / n))
	return Rate{Every: max(every, time.Microsecond), Burst: max(burst, 1)}
}

// Zero reports whether r is the zero Rate, which never limits.
func (r Rate) Zero() bool { return r.Every <= 0 || r.Burst <= 0 }

// tolerance is how far ahead of now a bucket's arrival time may run: Burst
// requests' worth, saturating rather than overflowing.
func (r Rate) tolerance() time.Duration {
	if r.Every > 0 && int64(r.Burst) > math.MaxInt64/int64(r.Every) {
		return math.MaxInt64
	}
	return time.Duration(r.Burst) * r.Every
}

// Bucket is one key's bucket at its rate.
type Bucket struct {
	Key  string
	Rate Rate
}

// Limiter takes one request from each of several buckets, all or none.
type Limiter interface {
	// Take takes one request from every bucket, or from none when any of
	// them is empty: then the Result says how long to wait and which
	// bucket made it so. An error means the limiter could not decide;
	// callers fail closed. Buckets of the zero Rate are skipped.
	Take(ctx context.Context, buckets ...Bucket) (Result, error)
}

// Result is a Limiter's answer.
type Result struct {
	// Wait is 0 when the request was taken, else how long until every
	// bucket would allow it.
	Wait time.Duration
	// Limited is the index, among the buckets given, of the one that
	// asked for Wait; -1 when the request was taken.
	Limited int
}

// Allowed reports whether the request was taken.
func (r Result) Allowed() bool { return r.Wait <= 0 }

var allowed = Result{Limited: -1}

// ErrFull is Memory refusing a request for a key it has no room for:
// new keys are refused, never admitted by forgetting one in use, until
// buckets refill and are dropped. The wait Take returns with it is when
// the first one is expected to.
var ErrFull = errors.New("rate limiter full")

// gcra applies one request to a bucket whose next arrival time is tat,
// at now: the new arrival time, and how long past the bucket's tolerance
// that is (the wait; not positive when the request conforms).
func gcra(tat, now time.Time, r Rate) (next time.Time, over time.Duration) {
	if tat.Before(now) {
		tat = now
	}
	next = tat.Add(r.Every)
	return next, next.Sub(now) - r.tolerance()
}

// live lists the buckets that can limit, each with its index among those
// given.
func live(buckets []Bucket) (out []Bucket, index []int) {
	for i, b := range buckets {
		if !b.Rate.Zero() {
			out = append(out, b)
			index = append(index, i)
		}
	}
	return out, index
}
