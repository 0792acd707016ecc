package exchange

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/limit"
)

// Limits are the rate limits an exchange spends once its token is verified
// and its policy allows it: one bucket per issuer and repository or
// project (the platform's Job.Who), one per policy. Kept in Redis they are
// shared by every replica, so that one runaway matrix build cannot spend a
// cloud's quota for everyone, however the load balancer spreads it.
//
// They are taken after the policy's decision and before the token's jti is
// claimed: a request its policy refuses spends nothing (a token from any
// repository could otherwise exhaust another's policy), and a request the
// limits refuse does not spend the token, so the job can retry with it.
type Limits struct {
	// Limiter holds the buckets; nil disables both limits.
	Limiter limit.Limiter
	// PerRepository and PerPolicy are the buckets' rates; the zero Rate
	// disables that limit.
	PerRepository limit.Rate
	PerPolicy     limit.Rate
}

// limit takes a request from the repository's and the policy's buckets, or
// refuses it (429) saying which limit was reached.
func (s *Service) limit(ctx context.Context, issuer, policy string, c *claims.Set) error {
	l := s.d.Limits
	if l.Limiter == nil || (l.PerRepository.Zero() && l.PerPolicy.Zero()) {
		return nil
	}
	who := s.d.Platforms.Job(c).Who
	res, err := l.Limiter.Take(ctx,
		limit.Bucket{Key: "repository\x00" + issuer + "\x00" + who, Rate: l.PerRepository},
		limit.Bucket{Key: "policy\x00" + policy, Rate: l.PerPolicy})
	switch {
	case errors.Is(err, limit.ErrFull):
		s.d.Metrics.rateLimited(limitKeysFull)
		return &throttled{wait: res.Wait, rule: "rate_limit",
			reason: "the broker's rate limiter holds as many repositories as it may; try again shortly"}
	case err != nil:
		return &unavailable{reason: "the rate limiter's store is unreachable; refusing rather than exceed the limits", err: err}
	case res.Allowed():
		return nil
	case res.Limited == 0:
		s.d.Metrics.rateLimited(limitRepository)
		return &throttled{wait: res.Wait, rule: "rate_limit.per_repository",
			reason: fmt.Sprintf("too many exchanges for %s from issuer %q (rate_limit.per_repository: %s); retry after %s",
				claims.Describe(who), issuer, describeRate(l.PerRepository), retryIn(res.Wait))}
	default:
		s.d.Metrics.rateLimited(limitPolicy)
		return &throttled{wait: res.Wait, rule: "rate_limit.per_policy",
			reason: fmt.Sprintf("too many exchanges for policy %q (rate_limit.per_policy: %s); retry after %s",
				policy, describeRate(l.PerPolicy), retryIn(res.Wait))}
	}
}

// describeRate says a rate as ferry.yaml does: "60 a minute, burst 10".
func describeRate(r limit.Rate) string {
	return fmt.Sprintf("%.4g a minute, burst %d", float64(time.Minute)/float64(r.Every), r.Burst)
}

// retryIn is the wait in whole seconds, as Retry-After carries it.
func retryIn(d time.Duration) string {
	return (max(d, time.Second) + time.Second - 1).Truncate(time.Second).String()
}
