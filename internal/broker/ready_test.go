package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

// TestReadinessFollowsRedis kills the replay store's redis-server under a
// running broker and starts it again: /readyz goes 200 → 503 naming the
// replay store → 200 by itself, and exchanges are refused with 503 (never
// minted without a replay check) while Redis is away.
func TestReadinessFollowsRedis(t *testing.T) {
	const password = "readyz-s3cret"
	srv := redisproc.Start(t, "--requirepass", password)
	gh, gl := issuers.Start(t)
	r := serveBroker(t, gh, gl, "replay: {store: redis, redis_url: 'redis://:"+password+"@"+srv.Addr+"/0'}\n", nil)

	if a := waitReady(t, r, 200); a.str("status") != "ready" {
		t.Fatalf("/readyz with Redis up = %d %s", a.status, a.raw)
	}
	if a := r.exchange(t, "ci-artifacts", "github-push-main", nil); a.status != 200 {
		t.Fatalf("exchange with Redis up = %d %s", a.status, a.raw)
	}

	srv.Stop()
	a := waitReady(t, r, 503)
	if a.str("error") != "unavailable" || !strings.Contains(a.str("error_description"), "replay store unreachable: ") {
		t.Errorf("/readyz with Redis down = %d %s, want 503 naming the replay store", a.status, a.raw)
	}
	if strings.Contains(a.raw, password) {
		t.Errorf("/readyz shows the Redis password: %s", a.raw)
	}
	if a.header.Get("Retry-After") == "" {
		t.Error("503 from /readyz without Retry-After")
	}
	if a := r.exchange(t, "ci-artifacts", "github-push-main", nil); a.status != 503 || a.str("error") != "unavailable" {
		t.Errorf("exchange with Redis down = %d %s, want 503 unavailable", a.status, a.raw)
	}

	srv.Restart(t)
	if a := waitReady(t, r, 200); a.str("status") != "ready" {
		t.Errorf("/readyz after Redis came back = %d %s", a.status, a.raw)
	}
	if a := r.exchange(t, "ci-artifacts", "github-push-main", nil); a.status != 200 {
		t.Errorf("exchange after Redis came back = %d %s", a.status, a.raw)
	}
}

// waitReady polls /readyz until it answers status, for at most 15 s, and
// returns the last answer.
func waitReady(t *testing.T, r *running, status int) answer {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := r.ready(t)
		if a.status == status || time.Now().After(deadline) {
			return a
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadinessSaysWhenTheAuditLogRefusesWrites closes the audit log
// under a running broker (as shutdown does; a failed fsync leaves the log
// refusing writes the same way, see audit's TestHealthy tests): /readyz
// must say 503 and why rather than keep the replica in service refusing
// every exchange.
func TestReadinessSaysWhenTheAuditLogRefusesWrites(t *testing.T) {
	gh, gl := issuers.Start(t)
	r := serveBroker(t, gh, gl, "", nil)
	if a := waitReady(t, r, 200); a.status != 200 {
		t.Fatalf("/readyz = %d %s", a.status, a.raw)
	}
	r.b.Close()
	a := r.ready(t)
	if a.status != 503 || !strings.Contains(a.str("error_description"), "audit log is closed") {
		t.Errorf("/readyz with the audit log closed = %d %s, want 503 naming the audit log", a.status, a.raw)
	}
	if a := r.exchange(t, "ci-artifacts", "github-push-main", nil); a.status != 503 {
		t.Errorf("exchange with the audit log closed = %d %s, want 503", a.status, a.raw)
	}
}
