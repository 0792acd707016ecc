package replay

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

// claimPutHarness is one ClaimPutter under test and its clock.
type claimPutHarness struct {
	store ClaimPutter
	now   func() time.Time
}

func (h claimPutHarness) claimed(t *testing.T, key string) bool {
	t.Helper()
	// A probe claim that wins is undone, so the probe changes nothing.
	fresh, err := h.store.Claim(context.Background(), key, h.now().Add(time.Minute))
	if err != nil {
		t.Fatalf("Claim(%q): %v", key, err)
	}
	if fresh {
		if err := h.store.Release(context.Background(), key); err != nil {
			t.Fatal(err)
		}
	}
	return !fresh
}

func (h claimPutHarness) record(t *testing.T, key string) (string, bool) {
	t.Helper()
	v, ok, err := h.store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v), ok
}

var claimPutCases = []struct {
	name string
	run  func(t *testing.T, h claimPutHarness)
}{
	{"a fresh key is claimed and the record kept", func(t *testing.T, h claimPutHarness) {
		ok, err := h.store.ClaimPut(context.Background(), "jti-1", h.now().Add(time.Minute), "grant/1", []byte("g1"), h.now().Add(time.Hour))
		if !ok || err != nil {
			t.Fatalf("ClaimPut = %v, %v; want true, nil", ok, err)
		}
		if !h.claimed(t, "jti-1") {
			t.Error("the key is not claimed")
		}
		if v, ok := h.record(t, "grant/1"); !ok || v != "g1" {
			t.Errorf("record = %q, %v; want g1", v, ok)
		}
	}},
	{"a claimed key keeps no record", func(t *testing.T, h claimPutHarness) {
		if ok, err := h.store.Claim(context.Background(), "jti-2", h.now().Add(time.Minute)); !ok || err != nil {
			t.Fatalf("Claim = %v, %v", ok, err)
		}
		ok, err := h.store.ClaimPut(context.Background(), "jti-2", h.now().Add(time.Minute), "grant/2", []byte("g2"), h.now().Add(time.Hour))
		if ok || err != nil {
			t.Fatalf("ClaimPut of a claimed key = %v, %v; want false, nil", ok, err)
		}
		if _, ok := h.record(t, "grant/2"); ok {
			t.Error("the record was kept for a refused claim")
		}
	}},
	{"a taken record key claims nothing", func(t *testing.T, h claimPutHarness) {
		mustPutRecord(t, h.store, "grant/3", "first", h.now().Add(time.Hour))
		ok, err := h.store.ClaimPut(context.Background(), "jti-3", h.now().Add(time.Minute), "grant/3", []byte("second"), h.now().Add(time.Hour))
		if ok || !errors.Is(err, ErrRecordTaken) {
			t.Fatalf("ClaimPut = %v, %v; want false, ErrRecordTaken", ok, err)
		}
		if h.claimed(t, "jti-3") {
			t.Error("the key was claimed though its record was refused")
		}
		if v, _ := h.record(t, "grant/3"); v != "first" {
			t.Errorf("record = %q, want the first value kept", v)
		}
	}},
	{"a past expiry is refused and changes nothing", func(t *testing.T, h claimPutHarness) {
		for _, c := range []struct{ claim, record time.Time }{
			{h.now().Add(-time.Second), h.now().Add(time.Hour)},
			{h.now().Add(time.Minute), h.now().Add(-time.Second)},
		} {
			if ok, err := h.store.ClaimPut(context.Background(), "jti-4", c.claim, "grant/4", []byte("g"), c.record); ok || err == nil {
				t.Fatalf("ClaimPut = %v, %v; want an error", ok, err)
			}
		}
		if h.claimed(t, "jti-4") {
			t.Error("a refused ClaimPut claimed its key")
		}
		if _, ok := h.record(t, "grant/4"); ok {
			t.Error("a refused ClaimPut kept its record")
		}
	}},
	{"of racing requests on one key exactly one wins", func(t *testing.T, h claimPutHarness) {
		wins, errs := race(16, func(i int) (bool, error) {
			return h.store.ClaimPut(context.Background(), "jti-raced", h.now().Add(time.Minute), fmt.Sprint("grant/raced-", i), []byte("g"), h.now().Add(time.Hour))
		})
		if wins != 1 || errs != 0 {
			t.Fatalf("%d won and %d failed, want exactly 1 win and no errors", wins, errs)
		}
		kept := 0
		for i := range 16 {
			if _, ok := h.record(t, fmt.Sprint("grant/raced-", i)); ok {
				kept++
			}
		}
		if kept != 1 {
			t.Errorf("%d records kept, want only the winner's", kept)
		}
	}},
}

func mustPutRecord(t *testing.T, r Records, key, value string, expiry time.Time) {
	t.Helper()
	if ok, err := r.Put(context.Background(), key, []byte(value), expiry); !ok || err != nil {
		t.Fatalf("Put(%q) = %v, %v", key, ok, err)
	}
}

func runClaimPutCases(t *testing.T, newHarness func(t *testing.T) claimPutHarness) {
	for _, tc := range claimPutCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newHarness(t)) })
	}
}

func TestMemoryClaimPut(t *testing.T) {
	runClaimPutCases(t, func(t *testing.T) claimPutHarness {
		clock := newFakeClock()
		return claimPutHarness{store: NewMemory(WithClock(clock.Now)), now: clock.Now}
	})
}

func TestRedisClaimPut(t *testing.T) {
	srv := redisproc.Start(t)
	runClaimPutCases(t, func(t *testing.T) claimPutHarness {
		r := emptyRedisStore(t, srv)
		return claimPutHarness{store: r, now: time.Now}
	})
}

// TestRedisClaimPutKeysAreHashedWithTheirExpiries checks the script writes
// what Claim and Put would: each key hashed under its own prefix, each with
// its own expiry.
func TestRedisClaimPutKeysAreHashedWithTheirExpiries(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRedisStore(t, srv)
	ctx := context.Background()
	if ok, err := r.ClaimPut(ctx, "jti", time.Now().Add(time.Minute), "grant/x", []byte("g"), time.Now().Add(time.Hour)); !ok || err != nil {
		t.Fatalf("ClaimPut = %v, %v", ok, err)
	}
	for _, c := range []struct {
		key  string
		ttl  time.Duration
		want string
	}{{redisKey("jti"), time.Minute, "1"}, {redisRecordKey("grant/x"), time.Hour, "g"}} {
		v, err := r.client.Get(ctx, c.key).Result()
		if err != nil || v != c.want {
			t.Errorf("GET %s = %q, %v; want %q", c.key, v, err, c.want)
		}
		ttl, err := r.client.PTTL(ctx, c.key).Result()
		if err != nil || ttl <= c.ttl-5*time.Second || ttl > c.ttl+time.Second {
			t.Errorf("PTTL %s = %s, %v; want about %s", c.key, ttl, err, c.ttl)
		}
	}
}

func TestRedisClaimPutFailsClosedWhenTheServerGoesAway(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRedisStore(t, srv)
	srv.Stop()
	ok, err := r.ClaimPut(context.Background(), "jti", time.Now().Add(time.Minute), "grant/x", []byte("g"), time.Now().Add(time.Hour))
	if ok || err == nil {
		t.Fatalf("ClaimPut with Redis gone = %v, %v; want false and an error", ok, err)
	}
}

// TestMemoryClaimPutIsBounded checks a full store refuses both halves.
func TestMemoryClaimPutIsBounded(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []MemoryOption
		fill func(m *Memory, now time.Time)
	}{
		{"claims at their maximum", []MemoryOption{WithMaxEntries(1)}, func(m *Memory, now time.Time) {
			m.Claim(ctx, "other", now.Add(time.Minute))
		}},
		{"records at their byte bound", []MemoryOption{WithMaxRecordBytes(4)}, func(m *Memory, now time.Time) {
			m.Put(ctx, "grant/other", []byte("abcd"), now.Add(time.Hour))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			m := NewMemory(append(tc.opts, WithClock(clock.Now))...)
			tc.fill(m, clock.Now())
			ok, err := m.ClaimPut(ctx, "jti", clock.Now().Add(time.Minute), "grant/x", []byte("g"), clock.Now().Add(time.Hour))
			if ok || !errors.Is(err, ErrFull) {
				t.Fatalf("ClaimPut on a full store = %v, %v; want ErrFull", ok, err)
			}
			h := claimPutHarness{store: m, now: clock.Now}
			if _, ok := h.record(t, "grant/x"); ok {
				t.Error("a refused ClaimPut kept its record")
			}
		})
	}
}
