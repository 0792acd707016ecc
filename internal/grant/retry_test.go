package grant

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// throttling is a provider's minter that throttles its first n calls,
// then mints; it records how many calls were in flight at once.
type throttling struct {
	n        int32 // calls to throttle
	err      *UpstreamError
	calls    atomic.Int32
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	hold     chan struct{} // when set, each call waits on it
}

func (f *throttling) Mint(ctx context.Context, _ Request) (*Credential, error) {
	c := f.calls.Add(1)
	now := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		seen := f.maxSeen.Load()
		if now <= seen || f.maxSeen.CompareAndSwap(seen, now) {
			break
		}
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c <= f.n {
		return nil, f.err
	}
	return &Credential{ID: "minted"}, nil
}

var throttled = &UpstreamError{Provider: "AWS STS", Code: "Throttling", Message: "Rate exceeded", Transient: true}

// clock records the waits a Retrying minter asks for and returns at once.
type clock struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (c *clock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return ctx.Err()
}

func TestRetryingRetriesThrottlingWithBackoffAndJitter(t *testing.T) {
	tests := []struct {
		name      string
		throttle  int32
		err       *UpstreamError
		opts      RetryOptions
		wantCalls int32
		wantErr   string // "" for success
		wantWaits []time.Duration
	}{
		{"two throttled calls, then a credential", 2, throttled, RetryOptions{BaseDelay: 100 * time.Millisecond},
			3, "", []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}},
		{"a persistent throttle stops at the bound", 100, throttled, RetryOptions{Attempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond},
			4, "AWS STS failed: Throttling: Rate exceeded (gave up after 4 attempts)",
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond}},
		{"a refusal is not retried", 100, &UpstreamError{Provider: "AWS STS", Code: "AccessDenied", Message: "not authorized"}, RetryOptions{},
			1, "AWS STS failed: AccessDenied: not authorized", nil},
		{"the provider's Retry-After is honoured", 1, &UpstreamError{Provider: "Google IAM Credentials", Code: "RESOURCE_EXHAUSTED", Transient: true, RetryAfter: 3 * time.Second},
			RetryOptions{BaseDelay: 100 * time.Millisecond}, 2, "", []time.Duration{3 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &throttling{n: tt.throttle, err: tt.err}
			c := &clock{}
			o := tt.opts
			o.Sleep, o.Jitter = c.sleep, func() float64 { return 0 } // the shortest wait of each step
			var attempts, retries int
			o.Hooks.Attempt = func(kind string, err error, retry bool) {
				attempts++
				if retry {
					retries++
				}
			}
			cred, err := Retrying("aws", f, o).Mint(context.Background(), Request{})
			if got := f.calls.Load(); got != tt.wantCalls {
				t.Errorf("%d calls to the provider, want %d", got, tt.wantCalls)
			}
			if tt.wantErr == "" {
				if err != nil || cred == nil || cred.ID != "minted" {
					t.Fatalf("Mint = %v, %v; want the credential", cred, err)
				}
			} else {
				var up *UpstreamError
				if !errors.As(err, &up) || err.Error() != tt.wantErr || up.Transient != tt.err.Transient {
					t.Fatalf("Mint error = %v, want %q (transient %v)", err, tt.wantErr, tt.err.Transient)
				}
			}
			if len(c.waits) != len(tt.wantWaits) {
				t.Fatalf("waits = %v, want %v", c.waits, tt.wantWaits)
			}
			for i := range c.waits {
				if c.waits[i] != tt.wantWaits[i] {
					t.Errorf("wait %d = %s, want %s", i, c.waits[i], tt.wantWaits[i])
				}
			}
			if attempts != int(tt.wantCalls) || retries != len(tt.wantWaits) {
				t.Errorf("hooks saw %d attempts and %d retries, want %d and %d", attempts, retries, tt.wantCalls, len(tt.wantWaits))
			}
		})
	}
}

func TestRetryingJittersEachWaitBetweenHalfAndAllOfIt(t *testing.T) {
	seen := map[time.Duration]bool{}
	for _, j := range []float64{0, 0.25, 0.5, 0.999} {
		c := &clock{}
		f := &throttling{n: 1, err: throttled}
		o := RetryOptions{BaseDelay: 200 * time.Millisecond, Sleep: c.sleep, Jitter: func() float64 { return j }}
		if _, err := Retrying("aws", f, o).Mint(context.Background(), Request{}); err != nil {
			t.Fatal(err)
		}
		w := c.waits[0]
		if w < 100*time.Millisecond || w >= 200*time.Millisecond {
			t.Errorf("jitter %v: wait %s, want in [100ms, 200ms)", j, w)
		}
		seen[w] = true
	}
	if len(seen) != 4 {
		t.Errorf("waits %v: jitter made no difference", seen)
	}
}

func TestRetryingStopsWhenTheDeadlineLeavesNoTimeToWait(t *testing.T) {
	f := &throttling{n: 100, err: throttled}
	c := &clock{}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := Retrying("aws", f, RetryOptions{BaseDelay: time.Second, Sleep: c.sleep, Jitter: func() float64 { return 0 }}).Mint(ctx, Request{})
	if f.calls.Load() != 1 || len(c.waits) != 0 {
		t.Errorf("%d calls and waits %v: a wait past the deadline must not be started", f.calls.Load(), c.waits)
	}
	var up *UpstreamError
	if !errors.As(err, &up) || !up.Transient || strings.Contains(err.Error(), "gave up") {
		t.Errorf("err = %v, want the provider's one transient error as it was", err)
	}
}

func TestRetryingCapsCallsInFlight(t *testing.T) {
	f := &throttling{n: 40, err: throttled, hold: make(chan struct{})}
	var maxReported atomic.Int32
	o := RetryOptions{MaxInFlight: 4, BaseDelay: time.Millisecond, Attempts: 3,
		Hooks: RetryHooks{InFlight: func(_ string, n int) {
			for {
				seen := maxReported.Load()
				if int32(n) <= seen || maxReported.CompareAndSwap(seen, int32(n)) {
					return
				}
			}
		}}}
	m := Retrying("aws", f, o)
	var wg sync.WaitGroup
	var ok, failed atomic.Int32
	for range 30 {
		wg.Go(func() {
			if _, err := m.Mint(context.Background(), Request{}); err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		})
	}
	// 30 requests press on 4 slots: 4 calls reach the provider, and no
	// more while they hang.
	for deadline := time.Now().Add(10 * time.Second); f.inFlight.Load() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls in flight", f.inFlight.Load())
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := f.inFlight.Load(); n != 4 {
		t.Errorf("%d calls in flight while 4 hang, want 4", n)
	}
	// Then the provider answers at once: the cap holds as calls churn.
	close(f.hold)
	wg.Wait()
	if got := f.maxSeen.Load(); got != 4 {
		t.Errorf("the provider saw %d calls at once, want the cap of 4 reached and held", got)
	}
	if got := maxReported.Load(); got != 4 {
		t.Errorf("InFlight reported at most %d, want 4", got)
	}
	// 40 throttled calls among 30 requests of at most 3 attempts each.
	if calls := f.calls.Load(); calls > 90 {
		t.Errorf("%d calls for 30 requests, over the bound of 3 each", calls)
	}
}

func TestRetryingRefusesWhenNoSlotComesFreeInTime(t *testing.T) {
	f := &throttling{hold: make(chan struct{})}
	var saturated atomic.Int32
	m := Retrying("gcp", f, RetryOptions{MaxInFlight: 1, Hooks: RetryHooks{Saturated: func(string) { saturated.Add(1) }}})
	busy := make(chan error, 1)
	go func() { _, err := m.Mint(context.Background(), Request{}); busy <- err }()
	for f.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := m.Mint(ctx, Request{})
	var un *UnavailableError
	if !errors.As(err, &un) || un.RetryAfter <= 0 || !strings.Contains(un.Reason, "1 gcp calls in flight") {
		t.Errorf("Mint with every slot taken = %v, want an UnavailableError with a Retry-After", err)
	}
	if f.calls.Load() != 1 || saturated.Load() != 1 {
		t.Errorf("%d calls, %d saturations; want the second Mint never to reach the provider", f.calls.Load(), saturated.Load())
	}
	close(f.hold)
	if err := <-busy; err != nil {
		t.Errorf("the call holding the slot: %v", err)
	}
}

type releasing struct{ throttling }

func (*releasing) Release(context.Context, ReleaseRequest) (Released, error) {
	return Released{Revoked: true, Detail: "deleted"}, nil
}

func TestRetryingUnwrapsToWhatTheMinterCanDo(t *testing.T) {
	plain := &throttling{}
	if _, ok := As[Releaser](Retrying("token", plain, RetryOptions{})); ok {
		t.Error("a minter that cannot release became a Releaser")
	}
	rel := &releasing{}
	w := Retrying("github", rel, RetryOptions{})
	r, ok := As[Releaser](Retrying("twice", w, RetryOptions{}))
	if !ok {
		t.Fatal("a Releaser wrapped twice is not found")
	}
	if got, err := r.Release(context.Background(), ReleaseRequest{}); err != nil || !got.Revoked {
		t.Errorf("Release = %+v, %v", got, err)
	}
	if u, ok := w.(interface{ Unwrap() Minter }); !ok || u.Unwrap() != Minter(rel) {
		t.Error("Unwrap does not return the wrapped minter")
	}
}
