package exchange_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/limit"
	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
)

func limitedHarness(t *testing.T, perRepository, perPolicy limit.Rate) (*harness, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.At(time.Now())
	return newHarness(t, harnessOpts{limits: exchange.Limits{
		Limiter:       limit.NewMemory(limit.WithClock(clock.Now)),
		PerRepository: perRepository, PerPolicy: perPolicy,
	}}), clock
}

func retryAfter(t *testing.T, r response) time.Duration {
	t.Helper()
	s, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || s < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds", r.header.Get("Retry-After"))
	}
	return time.Duration(s) * time.Second
}

func TestPerRepositoryLimitRefusesWithRetryAfterAndKeepsTheToken(t *testing.T) {
	h, clock := limitedHarness(t, limit.PerMinute(1, 2), limit.Rate{})
	app := func(c map[string]any) {}
	other := func(c map[string]any) { c["repository"] = "acme/other" }
	for i := range 2 {
		if r := h.exchange("artifacts", h.sign(h.gh, "github-push-main", app), nil); r.status != 200 {
			t.Fatalf("exchange %d within the burst: %d %s", i, r.status, r.raw)
		}
	}
	tok := h.sign(h.gh, "github-push-main", app)
	r := h.exchange("artifacts", tok, nil)
	wantError(t, r, 429, "rate_limited")
	if d := r.str("error_description"); !strings.Contains(d, `"acme/app"`) || !strings.Contains(d, "rate_limit.per_repository") {
		t.Errorf("description %q does not name the repository and the limit", d)
	}
	wait := retryAfter(t, r)
	if wait > time.Minute {
		t.Errorf("Retry-After %s, want at most one refill (1m)", wait)
	}
	// Another repository of the same owner and policy has its own bucket.
	if r := h.exchange("artifacts", h.sign(h.gh, "github-push-main", other), nil); r.status != 200 {
		t.Errorf("another repository: %d %s, want it unaffected", r.status, r.raw)
	}
	// Waiting as told is enough, and the refused token was not spent.
	clock.Advance(wait)
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Fatalf("the refused token after Retry-After: %d %s", r.status, r.raw)
	}

	var limited *audit.Record
	for _, rec := range h.auditRecords() {
		if rec.Error == "rate_limited" {
			limited = &rec
		}
	}
	if limited == nil || limited.Rule != "rate_limit.per_repository" || limited.Decision != audit.Deny || limited.Claim("repository") != "acme/app" {
		t.Errorf("audit of the refusal = %+v, want a deny by rule rate_limit.per_repository naming acme/app", limited)
	}
	if m := h.get("/metrics").raw; !strings.Contains(m, `ferry_rate_limited_total{limit="repository"} 1`) {
		t.Errorf("/metrics lacks the refusal:\n%s", grep(m, "ferry_rate_limited_total"))
	}
}

func TestPerPolicyLimitIsSpentOnlyByRequestsThePolicyAllows(t *testing.T) {
	h, _ := limitedHarness(t, limit.Rate{}, limit.PerMinute(1, 1))
	// Tokens the policy refuses, from a repository of any owner: were they
	// to spend the policy's bucket, anyone could starve its pipelines.
	for _, edit := range []func(map[string]any){
		func(c map[string]any) { c["ref"] = "refs/heads/dev" },
		func(c map[string]any) { c["repository"] = "evil/app" },
	} {
		for range 3 {
			wantError(t, h.exchange("artifacts", h.sign(h.gh, "github-push-main", edit), nil), 403, "access_denied")
		}
	}
	if r := h.exchange("artifacts", h.sign(h.gh, "github-push-main", nil), nil); r.status != 200 {
		t.Fatalf("the first allowed request: %d %s", r.status, r.raw)
	}
	other := func(c map[string]any) { c["repository"] = "acme/other" }
	r := h.exchange("artifacts", h.sign(h.gh, "github-push-main", other), nil)
	wantError(t, r, 429, "rate_limited")
	if d := r.str("error_description"); !strings.Contains(d, `policy "artifacts"`) || !strings.Contains(d, "rate_limit.per_policy") {
		t.Errorf("description %q does not name the policy and the limit", d)
	}
	// Another policy has its own bucket.
	if r := h.exchange("scoped", h.sign(h.gh, "github-push-main", nil), nil); r.status != 200 {
		t.Errorf("another policy: %d %s", r.status, r.raw)
	}
}

func TestIPv6ClientsAreLimitedByTheirSlash64(t *testing.T) {
	h := newHarness(t, harnessOpts{rate: 0.001, burst: 1, trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	from := func(client string) response {
		return h.post("/v1/exchange", "application/json", strings.NewReader(`{"policy":"artifacts","token":"x"}`), map[string]string{"X-Forwarded-For": client})
	}
	steps := []struct {
		client  string
		limited bool
	}{
		{"2001:db8:1:2::1", false},
		{"2001:db8:1:2:ffff:ffff:ffff:9", true}, // same /64
		{"2001:db8:1:3::1", false},              // the next /64
		{"198.51.100.7", false},
		{"::ffff:198.51.100.7", true}, // the same IPv4 address, mapped
		{"198.51.100.8", false},
	}
	for _, s := range steps {
		r := from(s.client)
		if got := r.status == 429; got != s.limited {
			t.Errorf("%s: %d, want limited %v", s.client, r.status, s.limited)
		}
	}
}

func TestClientBucketsAreCappedAndNewClientsRefusedAtTheCap(t *testing.T) {
	h := newHarness(t, harnessOpts{rate: 0.001, burst: 10, maxClients: 3, trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	from := func(client string) response {
		return h.post("/v1/exchange", "application/json", strings.NewReader(`{"policy":"artifacts","token":"x"}`), map[string]string{"X-Forwarded-For": client})
	}
	for _, c := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		if r := from(c); r.status == 429 {
			t.Fatalf("client %s under the cap: 429", c)
		}
	}
	for i := range 50 {
		r := from("198.51.100." + strconv.Itoa(i))
		wantError(t, r, 429, "rate_limited")
		retryAfter(t, r)
	}
	// The clients the broker holds are still served.
	if r := from("203.0.113.2"); r.status == 429 {
		t.Errorf("a held client at the cap: 429, want it served")
	}
	if m := h.get("/metrics").raw; !strings.Contains(m, `ferry_rate_limited_total{limit="client_cap"} 50`) {
		t.Errorf("/metrics does not count the refusals at the cap:\n%s", grep(m, "ferry_rate_limited_total"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
