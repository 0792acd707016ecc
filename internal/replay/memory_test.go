package replay

import (
	"context"
	"errors"
	"fmt"
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
	if n := m.Len(); n != 2 {
		t.Errorf("after every short claim expired, Len = %d, want 2 (long-lived and trigger)", n)
	}
	if len(m.queue) != 2 {
		t.Errorf("expiry queue holds %d entries, want 2", len(m.queue))
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
	if m.Len() != 50 || len(m.queue) != 50 {
		t.Errorf("after releasing half: Len = %d, queue = %d; want 50, 50", m.Len(), len(m.queue))
	}
	// The queue is still a valid heap: entries come out in expiry order.
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
