package limit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

var (
	_ Limiter = (*Memory)(nil)
	_ Limiter = (*Redis)(nil)
)

// harness is one Limiter with a way to let time pass: a fake clock for
// Memory, real sleeping for Redis, whose clock is its own.
type harness struct {
	lim  Limiter
	wait func(time.Duration)
}

// every is the refill of the buckets the cases use: long enough that a
// slow machine does not refill one between two requests of a case, short
// enough for Redis's real sleeps.
const every = 400 * time.Millisecond

var limiterCases = []struct {
	name string
	run  func(t *testing.T, h harness)
}{
	{"a full bucket allows its burst at once, then asks to wait one refill", func(t *testing.T, h harness) {
		b := Bucket{Key: "acme/app", Rate: Rate{Every: every, Burst: 3}}
		for range 3 {
			mustTake(t, h, 0, b)
		}
		wait := take(t, h, b)
		if wait <= 0 || wait > every {
			t.Fatalf("4th request: wait %s, want (0, %s]", wait, every)
		}
	}},
	{"a refused request takes nothing, and waiting as told is enough", func(t *testing.T, h harness) {
		b := Bucket{Key: "acme/app", Rate: Rate{Every: every, Burst: 1}}
		mustTake(t, h, 0, b)
		var wait time.Duration
		for range 5 { // refused again and again: still one refill away
			if wait = take(t, h, b); wait <= 0 {
				t.Fatal("a request over the burst was allowed")
			}
		}
		h.wait(wait + 20*time.Millisecond)
		mustTake(t, h, 0, b)
	}},
	{"keys have buckets of their own", func(t *testing.T, h harness) {
		r := Rate{Every: every, Burst: 1}
		mustTake(t, h, 0, Bucket{Key: "acme/app", Rate: r})
		mustTake(t, h, 0, Bucket{Key: "acme/other", Rate: r})
		mustTake(t, h, 0, Bucket{Key: "acme/app ", Rate: r})
		if take(t, h, Bucket{Key: "acme/app", Rate: r}) <= 0 {
			t.Error("acme/app's second request was allowed")
		}
	}},
	{"several buckets are taken all or none", func(t *testing.T, h harness) {
		repo := Bucket{Key: "repo", Rate: Rate{Every: every, Burst: 5}}
		policy := Bucket{Key: "policy", Rate: Rate{Every: every, Burst: 1}}
		mustTake(t, h, 0, repo, policy)
		for range 3 {
			if take(t, h, repo, policy) <= 0 {
				t.Fatal("allowed past the policy's burst")
			}
		}
		r, err := h.lim.Take(context.Background(), repo, Bucket{Key: "off"}, policy)
		if err != nil || r.Limited != 2 {
			t.Fatalf("Take = %+v, %v; want the policy's bucket (index 2) named as the limit", r, err)
		}
		// The refusals did not spend the repository's bucket: 4 left.
		for i := range 4 {
			if w := take(t, h, repo); w != 0 {
				t.Fatalf("repository request %d: wait %s, want its bucket unspent by the refusals", i, w)
			}
		}
		if take(t, h, repo) <= 0 {
			t.Error("the repository's 6th request was allowed")
		}
	}},
	{"the zero rate never limits", func(t *testing.T, h harness) {
		for range 10 {
			mustTake(t, h, 0, Bucket{Key: "k"})
		}
	}},
	{"of a hundred concurrent requests exactly the burst goes ahead", func(t *testing.T, h harness) {
		b := Bucket{Key: "matrix", Rate: Rate{Every: time.Hour, Burst: 10}}
		var ok, errs atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 100 {
			wg.Go(func() {
				<-start
				r, err := h.lim.Take(context.Background(), b)
				switch {
				case err != nil:
					errs.Add(1)
				case r.Allowed():
					ok.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok.Load() != 10 || errs.Load() != 0 {
			t.Errorf("%d went ahead and %d failed, want exactly 10 and none", ok.Load(), errs.Load())
		}
	}},
}

func runLimiterCases(t *testing.T, newHarness func(t *testing.T) harness) {
	for _, tc := range limiterCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newHarness(t)) })
	}
}

func take(t *testing.T, h harness, buckets ...Bucket) time.Duration {
	t.Helper()
	r, err := h.lim.Take(context.Background(), buckets...)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	if r.Allowed() != (r.Limited == -1) {
		t.Fatalf("Take = %+v: Limited must be -1 exactly when allowed", r)
	}
	return r.Wait
}

func mustTake(t *testing.T, h harness, want time.Duration, buckets ...Bucket) {
	t.Helper()
	if got := take(t, h, buckets...); got != want {
		t.Fatalf("Take = wait %s, want %s", got, want)
	}
}

func newClock() *fakeclock.Clock {
	return fakeclock.At(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
}

func TestMemory(t *testing.T) {
	runLimiterCases(t, func(t *testing.T) harness {
		c := newClock()
		return harness{lim: NewMemory(WithClock(c.Now)), wait: c.Advance}
	})
}

func TestRedis(t *testing.T) {
	srv := redisproc.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	runLimiterCases(t, func(t *testing.T) harness {
		if err := client.FlushDB(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		return harness{lim: NewRedis(client), wait: time.Sleep}
	})
}

func TestMemoryAtItsCapRefusesNewKeysAndServesKnownOnes(t *testing.T) {
	c := newClock()
	m := NewMemory(WithClock(c.Now), WithMaxKeys(3))
	ctx := context.Background()
	r := Rate{Every: time.Minute, Burst: 2}
	for _, k := range []string{"a", "b", "c"} {
		if res, err := m.Take(ctx, Bucket{Key: k, Rate: r}); !res.Allowed() || err != nil {
			t.Fatalf("Take %s = %+v, %v", k, res, err)
		}
	}
	res, err := m.Take(ctx, Bucket{Key: "d", Rate: r})
	if !errors.Is(err, ErrFull) || res.Wait <= 0 {
		t.Fatalf("a new key at the cap = %+v, %v; want a wait and ErrFull", res, err)
	}
	if res.Wait > time.Minute {
		t.Errorf("wait at the cap = %s, want at most the first bucket's refill (1m)", res.Wait)
	}
	if res, err := m.Take(ctx, Bucket{Key: "a", Rate: r}); !res.Allowed() || err != nil {
		t.Errorf("a known key at the cap = %+v, %v; want it served", res, err)
	}
	if m.Len() != 3 {
		t.Errorf("Len = %d, want the cap of 3", m.Len())
	}
	// A flood of new keys at the cap grows nothing.
	for i := range 1000 {
		m.Take(ctx, Bucket{Key: fmt.Sprint("flood-", i), Rate: r})
	}
	if m.Len() != 3 {
		t.Errorf("after a flood of new keys Len = %d, want 3", m.Len())
	}

	// b and c refill after a minute ("a", taken twice, after two): their
	// buckets are dropped and make room.
	c.Advance(time.Minute + time.Second)
	for _, k := range []string{"d", "e"} {
		if res, err := m.Take(ctx, Bucket{Key: k, Rate: r}); !res.Allowed() || err != nil {
			t.Errorf("Take %s once buckets refilled = %+v, %v", k, res, err)
		}
	}
	if _, err := m.Take(ctx, Bucket{Key: "f", Rate: r}); !errors.Is(err, ErrFull) {
		t.Errorf("beyond the cap again: %v, want ErrFull", err)
	}
}

func TestMemorySweepsRefilledBuckets(t *testing.T) {
	c := newClock()
	m := NewMemory(WithClock(c.Now))
	ctx := context.Background()
	for i := range 500 {
		m.Take(ctx, Bucket{Key: fmt.Sprint("ip-", i), Rate: Rate{Every: time.Second, Burst: 5}})
	}
	m.Take(ctx, Bucket{Key: "slow", Rate: Rate{Every: time.Hour, Burst: 1}})
	c.Advance(2 * time.Minute)
	m.Take(ctx, Bucket{Key: "trigger", Rate: Rate{Every: time.Second, Burst: 5}})
	if n := m.Len(); n != 2 {
		t.Errorf("after the per-second buckets refilled Len = %d, want 2 (slow, trigger)", n)
	}
}

func TestRedisKeysAreHashedAndExpireOnceRefilled(t *testing.T) {
	srv := redisproc.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	ctx := context.Background()
	key := "github\x00acme/app with spaces\nand a newline"
	if res, err := NewRedis(client).Take(ctx, Bucket{Key: key, Rate: Rate{Every: 2 * time.Second, Burst: 3}}); !res.Allowed() || err != nil {
		t.Fatalf("Take = %+v, %v", res, err)
	}
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || len(keys[0]) != len(KeyPrefix)+64 || keys[0][:len(KeyPrefix)] != KeyPrefix {
		t.Fatalf("keys = %q, want one hashed key under %s", keys, KeyPrefix)
	}
	ttl, err := client.PTTL(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 2*time.Second {
		t.Errorf("bucket expires in %s, want once it has refilled (2s)", ttl)
	}
}

func TestRedisFailsClosedWhenTheServerGoesAway(t *testing.T) {
	srv := redisproc.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer client.Close()
	l := NewRedis(client)
	b := Bucket{Key: "k", Rate: Rate{Every: time.Second, Burst: 1}}
	if _, err := l.Take(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := l.Take(context.Background(), b); err == nil {
		t.Error("Take with Redis gone returned no error")
	}
}

func TestRates(t *testing.T) {
	tests := []struct {
		got  Rate
		want Rate
	}{
		{PerSecond(20, 40), Rate{Every: 50 * time.Millisecond, Burst: 40}},
		{PerMinute(60, 0), Rate{Every: time.Second, Burst: 1}},
		{PerMinute(0.5, 2), Rate{Every: 2 * time.Minute, Burst: 2}},
		{PerSecond(0, 10), Rate{}},
		{PerSecond(-1, 10), Rate{}},
		{PerSecond(1e12, 1), Rate{Every: time.Microsecond, Burst: 1}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %+v, want %+v", tt.got, tt.want)
		}
	}
	if !(Rate{}).Zero() || (Rate{Every: time.Second, Burst: 1}).Zero() {
		t.Error("Zero is wrong")
	}
	if tol := (Rate{Every: time.Hour, Burst: 1 << 40}).tolerance(); tol <= 0 {
		t.Errorf("a huge burst's tolerance overflowed to %s", tol)
	}
}
