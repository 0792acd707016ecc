package replay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

var (
	_ Records = (*Memory)(nil)
	_ Records = (*Redis)(nil)
)

// recordHarness is one Records under test and its clock.
type recordHarness struct {
	store Records
	now   func() time.Time
	wait  func(time.Duration)
}

// recordCases is the behaviour every Records must have; each case gets a
// fresh store.
var recordCases = []struct {
	name string
	run  func(t *testing.T, h recordHarness)
}{
	{"a put value reads back until replaced", func(t *testing.T, h recordHarness) {
		exp := h.now().Add(time.Minute)
		mustPut(t, h, "grant/01J", "v1", exp, true)
		mustGet(t, h, "grant/01J", "v1", true)
		if ok, err := h.store.Replace(context.Background(), "grant/01J", []byte("v2")); !ok || err != nil {
			t.Fatalf("Replace = %v, %v", ok, err)
		}
		mustGet(t, h, "grant/01J", "v2", true)
	}},
	{"a second put of a live key loses and changes nothing", func(t *testing.T, h recordHarness) {
		exp := h.now().Add(time.Minute)
		mustPut(t, h, "released/01J", "first", exp, true)
		mustPut(t, h, "released/01J", "second", exp.Add(time.Hour), false)
		mustGet(t, h, "released/01J", "first", true)
	}},
	{"a missing key reads as absent and cannot be replaced", func(t *testing.T, h recordHarness) {
		mustGet(t, h, "never-put", "", false)
		if ok, err := h.store.Replace(context.Background(), "never-put", []byte("x")); ok || err != nil {
			t.Fatalf("Replace of a missing key = %v, %v; want false, nil", ok, err)
		}
		mustGet(t, h, "never-put", "", false)
	}},
	{"a record is gone once it expires, and its key can be put again", func(t *testing.T, h recordHarness) {
		mustPut(t, h, "short", "v", h.now().Add(300*time.Millisecond), true)
		h.wait(600 * time.Millisecond)
		mustGet(t, h, "short", "", false)
		if ok, err := h.store.Replace(context.Background(), "short", []byte("late")); ok || err != nil {
			t.Fatalf("Replace of an expired key = %v, %v; want false, nil", ok, err)
		}
		mustPut(t, h, "short", "again", h.now().Add(time.Minute), true)
		mustGet(t, h, "short", "again", true)
	}},
	{"replace keeps the expiry the put set", func(t *testing.T, h recordHarness) {
		mustPut(t, h, "keep", "v", h.now().Add(400*time.Millisecond), true)
		if ok, err := h.store.Replace(context.Background(), "keep", []byte("w")); !ok || err != nil {
			t.Fatalf("Replace = %v, %v", ok, err)
		}
		h.wait(700 * time.Millisecond)
		mustGet(t, h, "keep", "", false)
	}},
	{"delete forgets a key, and deleting nothing is fine", func(t *testing.T, h recordHarness) {
		mustPut(t, h, "lock/role", "held", h.now().Add(time.Minute), true)
		if err := h.store.Delete(context.Background(), "lock/role"); err != nil {
			t.Fatal(err)
		}
		mustGet(t, h, "lock/role", "", false)
		mustPut(t, h, "lock/role", "again", h.now().Add(time.Minute), true)
		if err := h.store.Delete(context.Background(), "nothing-here"); err != nil {
			t.Errorf("Delete of a missing key: %v", err)
		}
	}},
	{"keys however alike never collide, and values come back byte for byte", func(t *testing.T, h recordHarness) {
		exp := h.now().Add(time.Minute)
		long := strings.Repeat("k", 100_000)
		keys := []string{"a|b", "a|b ", "a\x00b", "A|b", "a\n|b", long, long + "x"}
		for i, k := range keys {
			mustPut(t, h, k, fmt.Sprintf("value %d \x00\xff", i), exp, true)
		}
		for i, k := range keys {
			mustGet(t, h, k, fmt.Sprintf("value %d \x00\xff", i), true)
		}
	}},
	{"bad arguments are refused and store nothing", func(t *testing.T, h recordHarness) {
		ctx := context.Background()
		for name, put := range map[string]func() (bool, error){
			"empty key":     func() (bool, error) { return h.store.Put(ctx, "", []byte("v"), h.now().Add(time.Minute)) },
			"expiry passed": func() (bool, error) { return h.store.Put(ctx, "k", []byte("v"), h.now().Add(-time.Second)) },
			"zero expiry":   func() (bool, error) { return h.store.Put(ctx, "k", []byte("v"), time.Time{}) },
			"value too long": func() (bool, error) {
				return h.store.Put(ctx, "k", make([]byte, MaxRecordBytes+1), h.now().Add(time.Minute))
			},
		} {
			if ok, err := put(); ok || err == nil {
				t.Errorf("Put with %s = %v, %v; want false and an error", name, ok, err)
			}
		}
		mustGet(t, h, "k", "", false)
		mustPut(t, h, "k", "fine", h.now().Add(time.Minute), true)
		if ok, err := h.store.Replace(ctx, "k", make([]byte, MaxRecordBytes+1)); ok || err == nil {
			t.Errorf("Replace with too long a value = %v, %v", ok, err)
		}
		mustGet(t, h, "k", "fine", true)
	}},
	{"a cancelled context fails closed", func(t *testing.T, h recordHarness) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if ok, err := h.store.Put(ctx, "c", []byte("v"), h.now().Add(time.Minute)); ok || !errors.Is(err, context.Canceled) {
			t.Errorf("Put = %v, %v; want false, context.Canceled", ok, err)
		}
		if _, ok, err := h.store.Get(ctx, "c"); ok || !errors.Is(err, context.Canceled) {
			t.Errorf("Get = %v, %v; want false, context.Canceled", ok, err)
		}
		mustPut(t, h, "c", "v", h.now().Add(time.Minute), true)
	}},
	{"of a hundred concurrent puts of one key exactly one wins", func(t *testing.T, h recordHarness) {
		exp := h.now().Add(time.Minute)
		var winner atomic.Value
		wins, errs := race(100, func(i int) (bool, error) {
			v := fmt.Sprint("replica-", i)
			ok, err := h.store.Put(context.Background(), "released/raced", []byte(v), exp)
			if ok {
				winner.Store(v)
			}
			return ok, err
		})
		if wins != 1 || errs != 0 {
			t.Fatalf("%d puts won and %d failed, want exactly 1 win and no errors", wins, errs)
		}
		mustGet(t, h, "released/raced", winner.Load().(string), true)
	}},
}

func runRecordCases(t *testing.T, newHarness func(t *testing.T) recordHarness) {
	for _, tc := range recordCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newHarness(t)) })
	}
}

func mustPut(t *testing.T, h recordHarness, key, value string, expiry time.Time, want bool) {
	t.Helper()
	got, err := h.store.Put(context.Background(), key, []byte(value), expiry)
	if err != nil {
		t.Fatalf("Put(%.20q): %v", key, err)
	}
	if got != want {
		t.Fatalf("Put(%.20q) = %v, want %v", key, got, want)
	}
}

func mustGet(t *testing.T, h recordHarness, key, want string, wantOK bool) {
	t.Helper()
	got, ok, err := h.store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%.20q): %v", key, err)
	}
	if ok != wantOK || !bytes.Equal(got, []byte(want)) {
		t.Fatalf("Get(%.20q) = %q, %v; want %q, %v", key, got, ok, want, wantOK)
	}
}

func TestMemoryRecords(t *testing.T) {
	runRecordCases(t, func(t *testing.T) recordHarness {
		clock := newFakeClock()
		return recordHarness{store: NewMemory(WithClock(clock.Now)), now: clock.Now, wait: clock.Advance}
	})
}

func TestRedisRecords(t *testing.T) {
	srv := redisproc.Start(t)
	runRecordCases(t, func(t *testing.T) recordHarness {
		r := emptyRedisStore(t, srv)
		return recordHarness{store: r, now: time.Now, wait: time.Sleep}
	})
}

func TestMemoryRecordsAreBoundedInBytes(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now), WithMaxRecordBytes(10))
	ctx := context.Background()
	put := func(key string, n int, ttl time.Duration) error {
		_, err := m.Put(ctx, key, bytes.Repeat([]byte("x"), n), clock.Now().Add(ttl))
		return err
	}
	if err := put("a", 6, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := put("b", 5, time.Hour); !errors.Is(err, ErrFull) {
		t.Fatalf("Put past the byte bound: err = %v, want ErrFull", err)
	}
	if err := put("b", 4, time.Hour); err != nil {
		t.Fatalf("Put up to the bound: %v", err)
	}
	// Deleting and expiring give the bytes back; replacing accounts for
	// the new length.
	if err := m.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := put("c", 4, time.Hour); err != nil {
		t.Fatalf("Put after a delete made room: %v", err)
	}
	if ok, err := m.Replace(ctx, "c", []byte("y")); !ok || err != nil {
		t.Fatalf("Replace = %v, %v", ok, err)
	}
	if err := put("d", 3, time.Hour); err != nil {
		t.Fatalf("Put after a replace shrank a value: %v", err)
	}
	if err := put("e", 1, time.Hour); !errors.Is(err, ErrFull) {
		t.Fatalf("Put with 10 of 10 bytes held: err = %v, want ErrFull", err)
	}
	clock.Advance(2 * time.Minute) // a's 6 bytes expire
	if err := put("e", 6, time.Hour); err != nil {
		t.Fatalf("Put once expiry made room: %v", err)
	}
}

func TestMemoryRecordsAndClaimsAreApartAndBounded(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now), WithMaxEntries(2))
	ctx := context.Background()
	// The same key text as a claim and as a record: two things.
	if ok, err := m.Claim(ctx, "k", clock.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if ok, err := m.Put(ctx, "k", []byte("v"), clock.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Put of a key also claimed = %v, %v; want true", ok, err)
	}
	m.Put(ctx, "k2", []byte("v"), clock.Now().Add(time.Hour))
	if _, err := m.Put(ctx, "k3", []byte("v"), clock.Now().Add(time.Minute)); !errors.Is(err, ErrFull) {
		t.Fatalf("Put beyond the cap: err = %v, want ErrFull", err)
	}
	clock.Advance(2 * time.Minute) // k expires and makes room
	if ok, err := m.Put(ctx, "k3", []byte("v"), clock.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Put once expiry made room = %v, %v", ok, err)
	}
	if n := m.RecordLen(); n != 2 {
		t.Errorf("RecordLen = %d, want 2 (k2, k3)", n)
	}
	if n := m.Len(); n != 1 {
		// The one claim, expired but not yet swept by a Claim: records
		// never count as claims.
		t.Errorf("Len = %d, want 1", n)
	}
}

func TestRedisRecordKeysAreHashedUnderTheirOwnPrefix(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRedisStore(t, srv)
	ctx := context.Background()
	key := "release\x00grant\x0001JABC"
	expiry := time.Now().Add(90 * time.Second)
	if ok, err := r.Put(ctx, key, []byte(`{"h":"x"}`), expiry); !ok || err != nil {
		t.Fatalf("Put = %v, %v", ok, err)
	}
	if ok, err := r.Claim(ctx, key, expiry); !ok || err != nil {
		t.Fatalf("Claim of the same key text = %v, %v; want true: claims and records are apart", ok, err)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	sum := sha256.Sum256([]byte(key))
	want := "ferry:record:" + hex.EncodeToString(sum[:])
	v, err := raw.Get(ctx, want).Result()
	if err != nil || v != `{"h":"x"}` {
		t.Fatalf("redis GET %s = %q, %v", want, v, err)
	}
	at, err := raw.PExpireTime(ctx, want).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := time.UnixMilli(int64(at / time.Millisecond)); got.Before(expiry) || got.Sub(expiry) >= time.Millisecond {
		t.Errorf("record expires at %v, want %v rounded up to the millisecond", got, expiry)
	}
	// Replace keeps that expiry (KEEPTTL).
	if ok, err := r.Replace(ctx, key, []byte("w")); !ok || err != nil {
		t.Fatalf("Replace = %v, %v", ok, err)
	}
	if at2, _ := raw.PExpireTime(ctx, want).Result(); at2 != at {
		t.Errorf("after Replace the record expires at %v, want %v", at2, at)
	}
}

func TestRedisRecordsFailClosedWhenTheServerGoesAway(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRedisStore(t, srv)
	ctx := context.Background()
	mustPut(t, recordHarness{store: r, now: time.Now}, "before", "v", time.Now().Add(time.Minute), true)
	srv.Stop()
	if ok, err := r.Put(ctx, "after", []byte("v"), time.Now().Add(time.Minute)); ok || err == nil {
		t.Errorf("Put with the server gone = %v, %v", ok, err)
	}
	if _, ok, err := r.Get(ctx, "before"); ok || err == nil {
		t.Errorf("Get with the server gone = %v, %v; want an error, not absent", ok, err)
	}
	if ok, err := r.Replace(ctx, "before", []byte("w")); ok || err == nil {
		t.Errorf("Replace with the server gone = %v, %v", ok, err)
	}
	if err := r.Delete(ctx, "before"); err == nil {
		t.Error("Delete with the server gone returned no error")
	}
}
