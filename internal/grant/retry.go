package grant

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of RetryOptions. Three attempts with waits of about 0.2 s and
// 0.4 s fit a throttled burst's recovery well inside the exchange's 15 s
// mint timeout; 32 calls in flight per kind and replica is far above a
// healthy provider's need (a call takes tens of milliseconds) and far
// below what turns a throttled provider's backlog into a storm.
const (
	DefaultAttempts    = 3
	DefaultBaseDelay   = 200 * time.Millisecond
	DefaultMaxDelay    = 2 * time.Second
	DefaultMaxInFlight = 32
)

// RetryOptions tune Retrying. Zero values take the defaults.
type RetryOptions struct {
	// Attempts is the most calls one Mint makes, the first included.
	Attempts int
	// BaseDelay is the wait before the first retry; each next one doubles,
	// up to MaxDelay, and is jittered (between half and all of it), so a
	// burst of failed calls does not come back as a burst. A provider's
	// own Retry-After is honoured when longer.
	BaseDelay, MaxDelay time.Duration
	// MaxInFlight caps the kind's calls in flight at once; a Mint waits
	// for a free slot as long as its context allows. Waits between
	// attempts hold no slot.
	MaxInFlight int
	// Hooks are told what happens, for metrics; any may be nil.
	Hooks RetryHooks
	// Sleep waits d or until ctx ends (default a timer); Jitter returns a
	// number in [0, 1) (default math/rand/v2). Tests replace both.
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func() float64
}

// RetryHooks report a Retrying minter's calls.
type RetryHooks struct {
	// Attempt is told of each call as it ends: its error (nil on success)
	// and whether another attempt follows.
	Attempt func(kind string, err error, retry bool)
	// InFlight is told the kind's calls in flight whenever it changes.
	InFlight func(kind string, n int)
	// Saturated is told of a Mint refused because no slot came free in time.
	Saturated func(kind string)
}

// Retrying wraps a kind's minter so that its provider's transient
// failures (an *UpstreamError with Transient set: throttling, a 5xx, no
// answer) are retried with jittered exponential backoff, at most
// o.Attempts calls and only while ctx (the exchange's mint timeout) leaves
// time for the wait, and so that at most o.MaxInFlight calls are in flight
// at once. It is the one place Ferry retries a provider: each kind's own
// client makes a single attempt (awssts disables the AWS SDK's retryer),
// or retries only what this does not (the GCP client retries Unavailable
// and DeadlineExceeded until the context ends, when this stops too), so
// attempts never multiply. The error after the last attempt is the
// provider's, its message saying how many were made; a transient one
// becomes a 502 with Retry-After.
//
// Unwrap returns the minter wrapped: what else it can do (release,
// introspect) is found through it with As.
func Retrying(kind string, m Minter, o RetryOptions) Minter {
	o = o.withDefaults()
	return &retrying{kind: kind, next: m, o: o, slots: make(chan struct{}, o.MaxInFlight)}
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.Attempts < 1 {
		o.Attempts = DefaultAttempts
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = DefaultBaseDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = max(DefaultMaxDelay, o.BaseDelay)
	}
	if o.MaxInFlight < 1 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	return o
}

type retrying struct {
	kind  string
	next  Minter
	o     RetryOptions
	slots chan struct{}

	mu       sync.Mutex // orders InFlight reports as the count changes
	inFlight int
}

// Unwrap returns the minter Retrying wrapped.
func (r *retrying) Unwrap() Minter { return r.next }

// Mint implements Minter.
func (r *retrying) Mint(ctx context.Context, req Request) (*Credential, error) {
	for n := 1; ; n++ {
		if err := r.acquire(ctx); err != nil {
			return nil, err
		}
		cred, err := r.next.Mint(ctx, req)
		r.release()

		var up *UpstreamError
		transient := err != nil && errors.As(err, &up) && up.Transient
		var wait time.Duration
		retry := transient && n < r.o.Attempts && ctx.Err() == nil
		if retry {
			wait = r.delay(n, up.RetryAfter)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
				retry = false // the answer would come too late: give the caller this one now
			}
		}
		if h := r.o.Hooks.Attempt; h != nil {
			h(r.kind, err, retry)
		}
		if !retry {
			if up != nil && n > 1 {
				return nil, afterAttempts(up, n)
			}
			return cred, err
		}
		if serr := r.o.Sleep(ctx, wait); serr != nil {
			return nil, afterAttempts(up, n)
		}
	}
}

// delay is the wait after attempt n: BaseDelay doubled n-1 times, capped
// at MaxDelay, jittered between half and all of it; at least what the
// provider asked for.
func (r *retrying) delay(n int, asked time.Duration) time.Duration {
	d := r.o.MaxDelay
	if n-1 < 32 {
		d = min(r.o.BaseDelay<<(n-1), r.o.MaxDelay)
	}
	d = d/2 + time.Duration(r.o.Jitter()*float64(d/2))
	return max(d, asked)
}

func (r *retrying) acquire(ctx context.Context) error {
	select {
	case r.slots <- struct{}{}:
	default:
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			if h := r.o.Hooks.Saturated; h != nil {
				h(r.kind)
			}
			return &UnavailableError{RetryAfter: 2 * time.Second, Err: ctx.Err(),
				Reason: fmt.Sprintf("this broker already has %d %s calls in flight to its provider; try again shortly", cap(r.slots), r.kind)}
		}
	}
	r.count(+1)
	return nil
}

func (r *retrying) release() {
	r.count(-1)
	<-r.slots
}

func (r *retrying) count(d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight += d
	if h := r.o.Hooks.InFlight; h != nil {
		h(r.kind, r.inFlight)
	}
}

// afterAttempts is the provider's last error, saying how many attempts
// were made; the caller sees it in the 502's description.
func afterAttempts(up *UpstreamError, n int) *UpstreamError {
	e := *up
	e.Message = fmt.Sprintf("%s (gave up after %d attempts)", e.Message, n)
	return &e
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
