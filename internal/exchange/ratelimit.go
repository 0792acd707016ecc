package exchange

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/ferry-broker/ferry/internal/limit"
)

// limiter is the rate limit per client address, applied before any token
// work. It is each replica's own (it protects that replica's CPU, and
// needs no round trip): the limits a runaway pipeline must not exceed
// across replicas are the per-repository and per-policy ones (limits.go).
//
// An IPv6 client is known by its /64, the least a site is given, so a host
// cannot buy itself fresh buckets from its own prefix. The buckets held
// are capped at maxClients: a bucket that has refilled is dropped, and at
// the cap a new address is refused with 429 (Retry-After: when the first
// bucket is expected to refill) while the addresses already held are
// served as usual. Memory never grows past the cap.
type limiter struct {
	rate    limit.Rate
	buckets *limit.Memory
}

func newLimiter(perSecond float64, burst, maxClients int) *limiter {
	r := limit.PerSecond(perSecond, burst)
	if r.Zero() {
		return nil
	}
	return &limiter{rate: r, buckets: limit.NewMemory(limit.WithMaxKeys(maxClients))}
}

// allow returns 0 when the request may go ahead, or how long to wait and
// which limit said so.
func (l *limiter) allow(ctx context.Context, addr string) (time.Duration, string) {
	if l == nil {
		return 0, ""
	}
	res, err := l.buckets.Take(ctx, limit.Bucket{Key: clientKey(addr), Rate: l.rate})
	switch {
	case errors.Is(err, limit.ErrFull):
		return max(res.Wait, time.Second), limitClientCap
	case err != nil:
		return time.Second, limitClientIP // a cancelled request: nothing to serve
	case !res.Allowed():
		return res.Wait, limitClientIP
	}
	return 0, ""
}

// clientKey is the bucket of a client address: an IPv4 address (an
// IPv4-mapped IPv6 one unmapped), or an IPv6 address's /64. Text that is no
// address is its own key.
func clientKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}
