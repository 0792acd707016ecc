package replay

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
)

func newFakeClock() *fakeclock.Clock {
	return fakeclock.At(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
}

func TestMemory(t *testing.T) {
	runStoreCases(t, func(t *testing.T) harness {
		clock := newFakeClock()
		return harness{store: NewMemory(WithClock(clock.Now)), now: clock.Now, wait: clock.Advance}
	})
}

func TestMemoryDropsExpiredEntries(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now))
	ctx := context.Background()
	for i := range 1000 {
		if ok, err := m.Claim(ctx, fmt.Sprint("short-", i), clock.Now().Add(time.Duration(i%60+1)*time.Second)); !ok || err != nil {
			t.Fatalf("Claim %d = %v, %v", i, ok, err)
		}
	}
	m.Claim(ctx, "long-lived", clock.Now().Add(time.Hour))
	clock.Advance(time.Minute)
	m.Claim(ctx, "trigger", clock.Now().Add(time.Minute))
	held(t, m, 2, 2, "after every short claim expired (long-lived and trigger are left)")
}

// held checks how many claims m holds and how many entries its expiry heap
// keeps, stale ones included.
func held(t *testing.T, m *Memory, live, inHeap int, when string) {
	t.Helper()
	if n := m.Len(); n != live {
		t.Errorf("%s: Len = %d, want %d", when, n, live)
	}
	if n := len(m.claims.heap); n != inHeap {
		t.Errorf("%s: expiry heap holds %d entries, want %d", when, n, inHeap)
	}
}

func TestMemoryReleaseForgetsTheEntryEntirely(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now))
	ctx := context.Background()
	for i := range 100 {
		key := fmt.Sprint("k", i)
		m.Claim(ctx, key, clock.Now().Add(time.Duration(100-i)*time.Minute))
		if i%2 == 0 {
			m.Release(ctx, key)
		}
	}
	if m.Len() != 50 {
		t.Errorf("after releasing half: Len = %d, want 50", m.Len())
	}
	// The heap still gives the live entries in expiry order, past the
	// released ones it has not dropped yet.
	clock.Advance(60 * time.Minute)
	m.Claim(ctx, "trigger", clock.Now().Add(time.Hour))
	for i := 1; i < 100; i += 2 {
		ok, err := m.Claim(ctx, fmt.Sprint("k", i), clock.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if expired := 100-i <= 60; ok != expired {
			t.Errorf("k%d (expiry %dm) claimable after 60m = %v, want %v", i, 100-i, ok, expired)
		}
	}
}

// What a released entry leaves in the expiry heap is bounded: claims that
// are released at once, many times over, never make it hold more than
// twice the live entries plus its slack, and it drops them when they are
// due.
func TestMemoryReleasedEntriesDoNotPileUp(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now))
	ctx := context.Background()
	for i := range 10 {
		m.Claim(ctx, fmt.Sprint("live-", i), clock.Now().Add(2*time.Hour))
	}
	most := 0
	for i := range 20 * staleSlack {
		key := fmt.Sprint("released-", i)
		if ok, err := m.Claim(ctx, key, clock.Now().Add(time.Hour)); !ok || err != nil {
			t.Fatalf("Claim %s = %v, %v", key, ok, err)
		}
		m.Release(ctx, key)
		most = max(most, len(m.claims.heap))
	}
	// 11 live at the peak: the ten, and the claim not yet released.
	if bound := 2*11 + staleSlack; most > bound {
		t.Errorf("expiry heap reached %d entries for 10 live ones, want at most %d", most, bound)
	}
	if m.Len() != 10 {
		t.Errorf("Len = %d, want the 10 live entries", m.Len())
	}
	clock.Advance(90 * time.Minute)
	m.Claim(ctx, "trigger", clock.Now().Add(time.Hour))
	held(t, m, 11, 11, "once the released claims were due")
}

// A key claimed again after its release keeps its new expiry, whatever its
// old entry in the heap says.
func TestMemoryReclaimAfterReleaseKeepsTheNewExpiry(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now))
	ctx := context.Background()
	m.Claim(ctx, "k", clock.Now().Add(time.Minute))
	m.Release(ctx, "k")
	if ok, _ := m.Claim(ctx, "k", clock.Now().Add(time.Hour)); !ok {
		t.Fatal("claim after release refused")
	}
	clock.Advance(2 * time.Minute) // the first expiry has passed
	if ok, err := m.Claim(ctx, "k", clock.Now().Add(time.Hour)); ok || err != nil {
		t.Errorf("replay within the new expiry = %v, %v; want false, nil", ok, err)
	}
}

func TestMemoryWhenFullRefusesRatherThanForget(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now), WithMaxEntries(3))
	ctx := context.Background()
	m.Claim(ctx, "a", clock.Now().Add(time.Minute))
	m.Claim(ctx, "b", clock.Now().Add(time.Minute))
	m.Claim(ctx, "c", clock.Now().Add(time.Hour))

	ok, err := m.Claim(ctx, "d", clock.Now().Add(time.Minute))
	if !errors.Is(err, ErrFull) || ok {
		t.Fatalf("Claim on a full store = %v, %v; want false, ErrFull", ok, err)
	}
	// The refusal says when there is room: when the oldest entry expires.
	var full *FullError
	if !errors.As(err, &full) || full.Live != 3 || !full.RoomAt.Equal(clock.Now().Add(time.Minute)) {
		t.Errorf("full error = %#v, want 3 live and room in a minute", full)
	}
	for _, k := range []string{"a", "b", "c"} {
		if ok, err := m.Claim(ctx, k, clock.Now().Add(time.Minute)); ok || err != nil {
			t.Errorf("replay of live %q on a full store = %v, %v; want false, nil", k, ok, err)
		}
	}

	clock.Advance(2 * time.Minute) // a and b expire and make room
	for _, k := range []string{"d", "e"} {
		if ok, err := m.Claim(ctx, k, clock.Now().Add(time.Minute)); !ok || err != nil {
			t.Errorf("Claim %q after expiry made room = %v, %v; want true, nil", k, ok, err)
		}
	}
	if _, err := m.Claim(ctx, "f", clock.Now().Add(time.Minute)); !errors.Is(err, ErrFull) {
		t.Errorf("Claim beyond the cap again: err = %v, want ErrFull", err)
	}
}

// A full store's refusal names the oldest live entry's expiry, not that of
// one released before it.
func TestMemoryFullErrorSkipsReleasedEntries(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now), WithMaxEntries(2))
	ctx := context.Background()
	m.Claim(ctx, "released", clock.Now().Add(time.Minute))
	m.Claim(ctx, "b", clock.Now().Add(time.Hour))
	m.Release(ctx, "released")
	m.Claim(ctx, "c", clock.Now().Add(2*time.Hour))
	_, err := m.Claim(ctx, "d", clock.Now().Add(time.Minute))
	var full *FullError
	if !errors.As(err, &full) || !full.RoomAt.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("full error = %v, want room when b expires, in an hour", err)
	}
}

// BenchmarkMemoryClaim claims fresh keys that each live a second while the
// clock moves a millisecond a claim, so sweeping is part of the cost.
func BenchmarkMemoryClaim(b *testing.B) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now))
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		clock.Advance(time.Millisecond)
		if _, err := m.Claim(ctx, fmt.Sprint("github/deploy-prod/", i), clock.Now().Add(time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollectorWithGrants times a forced collection while the store
// keeps n grants for release (a claimed jti and a 1 KiB record each), as a
// busy broker's memory store does: what the store costs every cycle of the
// collector. Compare grants=0 with the others in one run.
func BenchmarkCollectorWithGrants(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run(fmt.Sprint("grants=", n), func(b *testing.B) {
			m := NewMemory()
			value := make([]byte, 1000)
			expiry := time.Now().Add(time.Hour)
			ctx := context.Background()
			for i := range n {
				if ok, err := m.ClaimPut(ctx, fmt.Sprint("jti-", i), expiry, fmt.Sprint("grant-", i), value, expiry); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			runtime.GC()
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
			}
			b.StopTimer()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
			runtime.KeepAlive(m)
		})
	}
}

// An expiry past what Unix nanoseconds can hold (after 2262) still keeps
// its key claimed: it must not wrap into the past.
func TestMemoryFarFutureExpiryStaysClaimed(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now))
	ctx := context.Background()
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, err := m.Claim(ctx, "k", far); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if ok, err := m.Claim(ctx, "k", clock.Now().Add(time.Minute)); ok || err != nil {
		t.Errorf("replay of a key claimed until %s = %v, %v; want false, nil", far, ok, err)
	}
	if ok, err := m.Put(ctx, "r", []byte("v"), far); !ok || err != nil {
		t.Fatalf("Put = %v, %v", ok, err)
	}
	if _, ok, err := m.Get(ctx, "r"); !ok || err != nil {
		t.Errorf("Get of a record kept until %s = %v, %v; want it there", far, ok, err)
	}
}

func TestForMemoryLimitBoundsTheStoreBelowTheLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name             string
		limit            int64
		entries, records int
	}{
		{"no limit", 0, DefaultMaxEntries, DefaultMaxRecordBytes},
		{"no limit (negative)", -1, DefaultMaxEntries, DefaultMaxRecordBytes},
		{"the chart's 256Mi, GOMEMLIMIT 90 %", 230 * mib, 230 * mib / 16 / entryBytes, 230 * mib / 4},
		{"1 GiB: records at the default", 1024 * mib, 1024 * mib / 16 / entryBytes, DefaultMaxRecordBytes},
		{"4 GiB: both defaults, never raised", 4096 * mib, DefaultMaxEntries, DefaultMaxRecordBytes},
	} {
		entries, records := NewMemory(ForMemoryLimit(tt.limit)...).Bounds()
		if entries != tt.entries || records != tt.records {
			t.Errorf("%s: bounds %d entries, %d record bytes; want %d, %d", tt.name, entries, records, tt.entries, tt.records)
		}
	}
}

func TestAStoreBoundByTheMemoryLimitRefusesPastIt(t *testing.T) {
	ctx := context.Background()
	// Room for 3 entries and 1,200 bytes of records.
	m := NewMemory(ForMemoryLimit(16 * entryBytes * 3)...)
	exp := time.Now().Add(time.Minute)
	for i := range 3 {
		if ok, err := m.Claim(ctx, fmt.Sprint("jti-", i), exp); !ok || err != nil {
			t.Fatalf("claim %d: %v, %v", i, ok, err)
		}
	}
	if _, err := m.Claim(ctx, "jti-3", exp); !errors.Is(err, ErrFull) {
		t.Errorf("a fourth claim: %v, want ErrFull", err)
	}
	if ok, err := m.Put(ctx, "grant-a", make([]byte, 1000), exp); !ok || err != nil {
		t.Fatalf("a first record: %v, %v", ok, err)
	}
	if _, err := m.Put(ctx, "grant-b", make([]byte, 1000), exp); !errors.Is(err, ErrFull) {
		t.Errorf("a second record past 1,200 bytes: %v, want ErrFull", err)
	}
}
