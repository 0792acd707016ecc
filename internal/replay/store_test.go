package replay

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	_ Store = (*Memory)(nil)
	_ Store = (*Redis)(nil)
)

// harness is one Store under test with a way to let time pass: a fake
// clock for Memory, real sleeping for Redis, whose clock is its own.
type harness struct {
	store Store
	now   func() time.Time
	wait  func(time.Duration)
}

// storeCases is the behaviour every Store must have. Each case gets a fresh
// store.
var storeCases = []struct {
	name string
	run  func(t *testing.T, h harness)
}{
	{"the first claim of a key wins and a second is refused", func(t *testing.T, h harness) {
		exp := h.now().Add(time.Minute)
		mustClaim(t, h, "github/deploy-prod/jti-1", exp, true)
		mustClaim(t, h, "github/deploy-prod/jti-1", exp, false)
		mustClaim(t, h, "github/deploy-prod/jti-1", exp.Add(time.Hour), false)
	}},
	{"a key can be claimed again once its claim has expired", func(t *testing.T, h harness) {
		mustClaim(t, h, "jti-expiring", h.now().Add(300*time.Millisecond), true)
		h.wait(600 * time.Millisecond)
		mustClaim(t, h, "jti-expiring", h.now().Add(time.Minute), true)
		mustClaim(t, h, "jti-expiring", h.now().Add(time.Minute), false)
	}},
	{"a released key can be claimed again", func(t *testing.T, h harness) {
		exp := h.now().Add(time.Minute)
		mustClaim(t, h, "jti-released", exp, true)
		if err := h.store.Release(context.Background(), "jti-released"); err != nil {
			t.Fatalf("Release: %v", err)
		}
		mustClaim(t, h, "jti-released", exp, true)
		mustClaim(t, h, "jti-released", exp, false)
	}},
	{"releasing a key never claimed is not an error", func(t *testing.T, h harness) {
		if err := h.store.Release(context.Background(), "never-claimed"); err != nil {
			t.Errorf("Release: %v", err)
		}
	}},
	{"different keys never collide, however alike", func(t *testing.T, h harness) {
		exp := h.now().Add(time.Minute)
		long := strings.Repeat("k", 100_000)
		keys := []string{"policy|jti", "policy|jti ", "policy\x00jti", "Policy|jti", "políticа|jti", "policy\n|jti", long, long + "x"}
		for _, k := range keys {
			mustClaim(t, h, k, exp, true)
		}
		for _, k := range keys {
			mustClaim(t, h, k, exp, false)
		}
	}},
	{"an expiry already past is refused with an error", func(t *testing.T, h harness) {
		for _, exp := range []time.Time{h.now().Add(-time.Second), {}} {
			ok, err := h.store.Claim(context.Background(), "jti-stale", exp)
			if err == nil || ok {
				t.Errorf("Claim with expiry %v = %v, %v; want false and an error", exp, ok, err)
			}
		}
		mustClaim(t, h, "jti-stale", h.now().Add(time.Minute), true)
	}},
	{"an empty key is refused with an error", func(t *testing.T, h harness) {
		if ok, err := h.store.Claim(context.Background(), "", h.now().Add(time.Minute)); err == nil || ok {
			t.Errorf("Claim of an empty key = %v, %v; want false and an error", ok, err)
		}
	}},
	{"a cancelled context fails closed and claims nothing", func(t *testing.T, h harness) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ok, err := h.store.Claim(ctx, "jti-cancelled", h.now().Add(time.Minute))
		if !errors.Is(err, context.Canceled) || ok {
			t.Errorf("Claim with a cancelled context = %v, %v; want false, context.Canceled", ok, err)
		}
		mustClaim(t, h, "jti-cancelled", h.now().Add(time.Minute), true)
	}},
	{"of a hundred concurrent claims of one key exactly one wins", func(t *testing.T, h harness) {
		exp := h.now().Add(time.Minute)
		wins, errs := race(100, func(int) (bool, error) { return h.store.Claim(context.Background(), "jti-raced", exp) })
		if wins != 1 || errs != 0 {
			t.Errorf("%d claims won and %d failed, want exactly 1 win and no errors", wins, errs)
		}
	}},
}

func runStoreCases(t *testing.T, newHarness func(t *testing.T) harness) {
	for _, tc := range storeCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newHarness(t)) })
	}
}

func mustClaim(t *testing.T, h harness, key string, expiry time.Time, want bool) {
	t.Helper()
	got, err := h.store.Claim(context.Background(), key, expiry)
	if err != nil {
		t.Fatalf("Claim(%.20q): %v", key, err)
	}
	if got != want {
		t.Fatalf("Claim(%.20q) = %v, want %v", key, got, want)
	}
}

// race runs try(0) … try(n-1) at once, each on its own goroutine released
// together, and counts the calls that won (true) and that failed.
func race(n int, try func(i int) (bool, error)) (wins, errs int32) {
	var w, e atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := try(i)
			if err != nil {
				e.Add(1)
			}
			if ok {
				w.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return w.Load(), e.Load()
}
