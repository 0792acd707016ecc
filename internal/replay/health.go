package replay

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Checker is a Store that can say whether it would take a write now, for
// the broker's readiness: a replica whose replay store cannot record a
// token id refuses every exchange, so it must leave the load balancer.
type Checker interface {
	// Healthy returns nil when a Claim could be recorded now, or why not.
	Healthy(ctx context.Context) error
}

var (
	_ Checker = (*Memory)(nil)
	_ Checker = (*Redis)(nil)
)

// Healthy implements Checker: a Memory store takes writes until it holds
// its maximum of live entries.
func (m *Memory) Healthy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims.sweep(unixNano(m.now()), nil)
	if n := m.claims.len(); n >= m.max {
		return fmt.Errorf("%w (%d live entries)", ErrFull, n)
	}
	return nil
}

// Health checks of a Redis store are bounded and cached: a /readyz probe
// every second from each kubelet must not become Redis load, and a Redis
// that hangs must not hang the probe.
const (
	healthTimeout = time.Second
	healthTTL     = time.Second
)

// healthKey is written by every check. A PING would pass on a replica that
// is read-only after a failover, or on a Redis out of memory, and both
// refuse the SET NX a claim needs; a short-lived SET is refused the same.
const healthKey = "ferry:health"

// healthCache remembers the last check of a Redis store.
type healthCache struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// Healthy implements Checker with a SET of a short-lived key, bounded by a
// one-second timeout and its answer reused for a second. Errors name the
// address tried, never the URL's user information.
func (r *Redis) Healthy(ctx context.Context) error {
	h := &r.health
	h.mu.Lock() // concurrent probes wait for one check rather than each make one
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < healthTTL {
		return h.err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
	defer cancel()
	err := r.client.Set(cctx, healthKey, "1", 5*time.Second).Err()
	if err != nil {
		err = fmt.Errorf("redis at %s: %s", r.client.Options().Addr, redactUserinfo(err.Error()))
	}
	h.at, h.err = time.Now(), err
	return err
}

// Client is the store's connection pool, for other state the replicas
// share in the same Redis (rate limits).
func (r *Redis) Client() *redis.Client { return r.client }

// userinfo matches the user information of a URL (scheme://user:pass@).
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@`)

// redactUserinfo hides any URL credentials in s: go-redis does not put
// them in its errors, but a readiness answer is no place to find out.
func redactUserinfo(s string) string {
	return userinfo.ReplaceAllString(s, "${1}xxxxx@")
}
