package replay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

func TestMemoryHealthyUntilFull(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(WithClock(clock.Now), WithMaxEntries(2))
	ctx := context.Background()
	if err := m.Healthy(ctx); err != nil {
		t.Fatalf("Healthy of an empty store = %v", err)
	}
	m.Claim(ctx, "a", clock.Now().Add(time.Minute))
	m.Claim(ctx, "b", clock.Now().Add(time.Minute))
	if err := m.Healthy(ctx); !errors.Is(err, ErrFull) {
		t.Fatalf("Healthy of a full store = %v, want ErrFull", err)
	}
	clock.Advance(2 * time.Minute) // both expire: room again
	if err := m.Healthy(ctx); err != nil {
		t.Errorf("Healthy once the entries expired = %v", err)
	}
}

func TestRedisHealthyFollowsTheServerAndNeverShowsThePassword(t *testing.T) {
	const password = "hunter2-secret"
	srv := redisproc.Start(t, "--requirepass", password)
	r, err := NewRedis(context.Background(), "redis://:"+password+"@"+srv.Addr+"/0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if err := r.Healthy(ctx); err != nil {
		t.Fatalf("Healthy while the server runs = %v", err)
	}

	srv.Stop()
	err = waitHealth(r, func(err error) bool { return err != nil })
	if err == nil {
		t.Fatal("Healthy stayed nil with the server gone")
	}
	if msg := err.Error(); strings.Contains(msg, password) || !strings.Contains(msg, srv.Addr) {
		t.Errorf("Healthy = %q: want the address tried and never the password", msg)
	}
	// Cached: asking again at once does not dial again, and answers the same.
	start := time.Now()
	if again := r.Healthy(ctx); again == nil || again.Error() != err.Error() {
		t.Errorf("a second Healthy within the cache = %v, want %v", again, err)
	}
	if took := time.Since(start); took > healthTimeout {
		t.Errorf("a cached Healthy took %s", took)
	}

	srv.Restart(t)
	if err := waitHealth(r, func(err error) bool { return err == nil }); err != nil {
		t.Errorf("Healthy after the server came back = %v", err)
	}
}

func TestRedisHealthyRefusesAReadOnlyServer(t *testing.T) {
	srv := redisproc.Start(t)
	r, err := NewRedis(context.Background(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A replica of a master that is not there: it answers PING, refuses
	// writes, as a Redis demoted by a failover does.
	if err := r.client.ReplicaOf(context.Background(), "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Healthy(context.Background()); err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Errorf("Healthy of a read-only Redis = %v, want its READONLY refusal", err)
	}
	if err := r.client.Ping(context.Background()).Err(); err != nil {
		t.Errorf("PING = %v: the test means a server that answers PING", err)
	}
}

// waitHealth polls Healthy past its cache until done(err) or 10s pass.
func waitHealth(r *Redis, done func(error) bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.Healthy(context.Background())
		if done(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
