package broker_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

// TestReplicasShareRateLimitsThroughRedis runs two brokers on one
// redis-server, as two replicas behind a load balancer: a repository's and
// a policy's buckets are one, whichever replica a request reaches.
func TestReplicasShareRateLimitsThroughRedis(t *testing.T) {
	srv := redisproc.Start(t)
	gh, gl := issuers.Start(t)
	cfg := "replay: {store: redis, redis_url: '" + srv.URL() + "'}\n" +
		"rate_limit: {per_repository: {per_minute: 1, burst: 2}, per_policy: {per_minute: 1, burst: 4}}\n"
	a := serveBroker(t, gh, gl, cfg, nil)
	b := serveBroker(t, gh, gl, cfg, nil)
	repo := func(name string) func(map[string]any) {
		return func(c map[string]any) { c["repository"] = name }
	}

	// acme/app's burst of 2 is spent across both replicas.
	for i, r := range []*running{a, b} {
		if got := r.exchange(t, "ci-artifacts", "github-push-main", repo("acme/app")); got.status != 200 {
			t.Fatalf("acme/app request %d: %d %s", i, got.status, got.raw)
		}
	}
	for i, r := range []*running{a, b} {
		got := r.exchange(t, "ci-artifacts", "github-push-main", repo("acme/app"))
		if got.status != 429 || got.str("error") != "rate_limited" || !strings.Contains(got.str("error_description"), "rate_limit.per_repository") {
			t.Fatalf("acme/app over its burst at replica %d: %d %s, want 429 per_repository", i, got.status, got.raw)
		}
		if s, err := strconv.Atoi(got.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
			t.Errorf("Retry-After = %q, want 1..60 seconds", got.header.Get("Retry-After"))
		}
	}
	// The policy's burst of 4 counts both repositories, on both replicas:
	// two spent by acme/app, two left for acme/lib, none for acme/web.
	for i, r := range []*running{b, a} {
		if got := r.exchange(t, "ci-artifacts", "github-push-main", repo("acme/lib")); got.status != 200 {
			t.Fatalf("acme/lib request %d: %d %s", i, got.status, got.raw)
		}
	}
	got := a.exchange(t, "ci-artifacts", "github-push-main", repo("acme/web"))
	if got.status != 429 || !strings.Contains(got.str("error_description"), `policy "ci-artifacts"`) {
		t.Errorf("acme/web past the policy's burst: %d %s, want 429 naming the policy", got.status, got.raw)
	}
	for _, r := range []*running{a, b} {
		m := r.do(t, "GET", "/metrics", nil).raw
		if !strings.Contains(m, `ferry_rate_limited_total{limit="repository"} 1`) {
			t.Errorf("a replica's /metrics does not count its own refusal:\n%s", grepLines(m, "ferry_rate_limited_total"))
		}
	}
}
