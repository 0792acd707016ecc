package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
)

// fakeTimer stands in for time.After in the scheduler: each call hands the
// requested wait to the test, which moves the clock and fires. A call to
// after also means the previous cycle's fetch has finished.
type fakeTimer struct {
	waits chan time.Duration
	fire  chan time.Time
	stop  chan struct{}
}

func newFakeTimer(t *testing.T) *fakeTimer {
	f := &fakeTimer{waits: make(chan time.Duration), fire: make(chan time.Time), stop: make(chan struct{})}
	t.Cleanup(func() { close(f.stop) })
	return f
}

func (f *fakeTimer) after(d time.Duration) <-chan time.Time {
	select {
	case f.waits <- d:
	case <-f.stop:
	}
	return f.fire
}

// next returns the wait the scheduler asks for next.
func (f *fakeTimer) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-f.waits:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduler did not ask for its next wait")
		return 0
	}
}

// elapse moves the clock by d and fires the scheduler's timer.
func (f *fakeTimer) elapse(t *testing.T, c *fakeclock.Clock, d time.Duration) {
	t.Helper()
	c.Advance(d)
	select {
	case f.fire <- c.Now():
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduler is not waiting on its timer")
	}
}

// scheduled is one issuer's pool with its scheduler running on a fake
// timer and clock.
type scheduled struct {
	pool  *Pool
	clock *fakeclock.Clock
	timer *fakeTimer
}

func runScheduled(t *testing.T, cfg IssuerConfig, opts Options) *scheduled {
	t.Helper()
	s := &scheduled{clock: newClock(), timer: newFakeTimer(t)}
	opts.Now = s.clock.Now
	opts.Logger = slog.New(slog.DiscardHandler)
	pool, err := NewPool([]IssuerConfig{cfg}, opts)
	if err != nil {
		t.Fatal(err)
	}
	pool.issuers[0].keys.after = s.timer.after
	s.pool = pool
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { pool.Run(ctx); close(stopped) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	if d := s.timer.next(t); d != 0 {
		t.Fatalf("first scheduled fetch after %s, want at once", d)
	}
	s.timer.elapse(t, s.clock, 0)
	return s
}

func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s: wait %s, want within [%s, %s]", what, d, lo, hi)
	}
}

// metric reads one issuer's sample of a metric family from reg.
func metric(t *testing.T, reg *prometheus.Registry, name, issuer string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "issuer") == issuer {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{issuer=%q} in the registry", name, issuer)
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestAWithdrawnKeyStopsVerifyingAfterTheScheduledRefresh(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	s := runScheduled(t, IssuerConfig{Name: "github", IssuerURL: iss.URL(), Audiences: []string{"ferry"}}, Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.pool.Collector())
	ctx := context.Background()
	token := func() string {
		now := s.clock.Now()
		return sign(t, iss, with(sample(t, "github-push-main"), map[string]any{
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}))
	}

	// The dev issuer sends Cache-Control: max-age=60, shorter than 15m.
	d := s.timer.next(t)
	within(t, "after the first fetch", d, 48*time.Second, 60*time.Second)
	old := token()
	if _, err := s.pool.Verify(ctx, old); err != nil {
		t.Fatalf("Verify before the rotation: %v", err)
	}
	if err := iss.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Verify(ctx, old); err != nil {
		t.Fatalf("Verify with the withdrawn key before the next scheduled fetch: %v (the cached key still verifies until then)", err)
	}

	s.timer.elapse(t, s.clock, d)
	d = s.timer.next(t)
	if n := iss.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS requests = %d, want 2 (start, schedule)", n)
	}
	_, err := s.pool.Verify(ctx, old)
	mustTokenError(t, err, `is not among the keys of issuer "github"`)
	if _, err := s.pool.Verify(ctx, token()); err != nil {
		t.Fatalf("a token signed by the new key: %v", err)
	}
	fetchedAt := s.clock.Now()
	if got := metric(t, reg, "ferry_issuer_keys_last_success_timestamp_seconds", "github"); got != float64(fetchedAt.UnixNano())/1e9 {
		t.Errorf("last success = %v, want %v", got, float64(fetchedAt.UnixNano())/1e9)
	}

	// An outage: the scheduled fetch fails, the cached keys keep verifying,
	// and /metrics and /readyz say so without taking the broker out.
	iss.SetDown(true)
	s.timer.elapse(t, s.clock, d)
	d = s.timer.next(t)
	if d != DefaultMinRefresh {
		t.Errorf("wait after a failed fetch = %s, want MinRefresh %s", d, DefaultMinRefresh)
	}
	if _, err := s.pool.Verify(ctx, token()); err != nil {
		t.Fatalf("Verify with cached keys during the outage: %v", err)
	}
	for name, want := range map[string]float64{
		"ferry_issuer_keys":                                1,
		"ferry_issuer_key_refreshes_total":                 3,
		"ferry_issuer_key_refresh_failures_total":          1,
		"ferry_issuer_keys_stale":                          1,
		"ferry_issuer_keys_last_success_timestamp_seconds": float64(fetchedAt.UnixNano()) / 1e9,
	} {
		if got := metric(t, reg, name, "github"); got != want {
			t.Errorf("%s = %v during the outage, want %v", name, got, want)
		}
	}
	problems, err := s.pool.Readiness(ctx)
	if err != nil {
		t.Fatalf("Readiness during the outage: %v, want ready with a problem", err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], `issuer "github": key refresh failed at`) || !strings.Contains(problems[0], "still verifying") {
		t.Errorf("problems = %q, want the failed refresh named", problems)
	}
	if strings.Contains(problems[0], "127.0.0.1") {
		t.Errorf("problem %q names the issuer's address", problems[0])
	}

	// Failures in a row back off, up to the interval.
	s.timer.elapse(t, s.clock, d)
	d = s.timer.next(t)
	within(t, "after a second failure", d, 48*time.Second, 60*time.Second)
	if got := metric(t, reg, "ferry_issuer_key_refresh_failures_total", "github"); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}

	iss.SetDown(false)
	s.timer.elapse(t, s.clock, d)
	d = s.timer.next(t)
	within(t, "after recovering", d, 48*time.Second, 60*time.Second)
	if problems, err := s.pool.Readiness(ctx); err != nil || len(problems) != 0 {
		t.Errorf("Readiness after recovering = %q, %v; want ready", problems, err)
	}
	if got := metric(t, reg, "ferry_issuer_keys_stale", "github"); got != 0 {
		t.Errorf("stale = %v after recovering, want 0", got)
	}
}

// jwksServer serves one EC key with a Cache-Control header the test sets.
type jwksServer struct {
	*httptest.Server
	mu           sync.Mutex
	cacheControl string
}

func startJWKS(t *testing.T) *jwksServer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		if s.cacheControl != "" {
			w.Header().Set("Cache-Control", s.cacheControl)
		}
		s.mu.Unlock()
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setCacheControl(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cacheControl = v
}

func TestTheScheduleHonoursCacheControlWithinItsBounds(t *testing.T) {
	tests := []struct {
		name         string
		interval     time.Duration
		cacheControl string
		lo, hi       time.Duration
	}{
		{"no Cache-Control refetches within 15m, jittered", 0, "", 12 * time.Minute, 15 * time.Minute},
		{"a day's max-age still refetches within 15m", 0, "public, max-age=86400", 12 * time.Minute, 15 * time.Minute},
		{"an overflowing max-age still refetches within 15m", 0, "max-age=99999999999999999999999", 12 * time.Minute, 15 * time.Minute},
		{"max-age=300 refetches within 5m", 0, "max-age=300", 4 * time.Minute, 5 * time.Minute},
		{"a quoted max-age is read", 0, `max-age="120"`, 96 * time.Second, 120 * time.Second},
		{"max-age=0 waits MinRefresh, not less", 0, "max-age=0", DefaultMinRefresh, DefaultMinRefresh},
		{"no-store waits MinRefresh", 0, "no-store", DefaultMinRefresh, DefaultMinRefresh},
		{"no-cache beside a long max-age wins", 0, "max-age=3600, no-cache", DefaultMinRefresh, DefaultMinRefresh},
		{"a max-age that is not a number counts as stale", 0, "max-age=soon", DefaultMinRefresh, DefaultMinRefresh},
		{"a configured 5m interval caps a longer max-age", 5 * time.Minute, "max-age=900", 4 * time.Minute, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startJWKS(t)
			srv.setCacheControl(tt.cacheControl)
			s := runScheduled(t, IssuerConfig{Name: "ci", IssuerURL: "https://ci.example", Audiences: []string{"ferry"}, JWKSURL: srv.URL},
				Options{RefreshInterval: tt.interval})
			within(t, "Cache-Control "+tt.cacheControl, s.timer.next(t), tt.lo, tt.hi)
		})
	}
}

func TestNextWait(t *testing.T) {
	const interval, minRefresh = 15 * time.Minute, 30 * time.Second
	failed := errors.New("down")
	key := []jose.JSONWebKey{{KeyID: "k"}}
	tests := []struct {
		name        string
		set         func(k *keySet)
		least, most time.Duration // with the jitter's extremes
	}{
		{"never fetched: at once", func(*keySet) {}, 0, 0},
		{"fresh keys without Cache-Control: the interval", func(k *keySet) { k.keys = key }, 12 * time.Minute, interval},
		{"fresh keys with a shorter max-age: the max-age", func(k *keySet) { k.keys = key; k.maxAge = 10 * time.Minute; k.hasMaxAge = true }, 8 * time.Minute, 10 * time.Minute},
		{"fresh keys with a longer max-age: the interval", func(k *keySet) { k.keys = key; k.maxAge = time.Hour; k.hasMaxAge = true }, 12 * time.Minute, interval},
		{"max-age below MinRefresh: MinRefresh", func(k *keySet) { k.keys = key; k.maxAge = 5 * time.Second; k.hasMaxAge = true }, minRefresh, minRefresh},
		{"one failure: MinRefresh", func(k *keySet) { k.keys = key; k.lastErr = failed; k.failedRun = 1 }, minRefresh, minRefresh},
		{"three failures: 4 x MinRefresh", func(k *keySet) { k.lastErr = failed; k.failedRun = 3 }, 96 * time.Second, 2 * time.Minute},
		{"many failures: at most the interval", func(k *keySet) { k.lastErr = failed; k.failedRun = 40 }, 12 * time.Minute, interval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &keySet{interval: interval, minRefresh: minRefresh}
			tt.set(k)
			if tt.least != 0 || tt.most != 0 {
				k.attemptedAt = time.Now()
			}
			most := k.nextWait(func(int64) int64 { return 0 })
			least := k.nextWait(func(n int64) int64 { return n - 1 })
			if most != tt.most || least != tt.least {
				t.Errorf("wait within [%s, %s], want [%s, %s]", least, most, tt.least, tt.most)
			}
		})
	}
}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		lines []string
		want  cacheLifetime
	}{
		{nil, cacheLifetime{}},
		{[]string{"public"}, cacheLifetime{}},
		{[]string{"public, max-age=60"}, cacheLifetime{60 * time.Second, true}},
		{[]string{"MAX-AGE=60"}, cacheLifetime{60 * time.Second, true}},
		{[]string{"max-age=60", "max-age=30"}, cacheLifetime{30 * time.Second, true}},
		{[]string{"s-maxage=10, max-age=60"}, cacheLifetime{60 * time.Second, true}},
		{[]string{"max-age=-1"}, cacheLifetime{0, true}},
		{[]string{"max-age="}, cacheLifetime{0, true}},
		{[]string{"private, no-cache"}, cacheLifetime{0, true}},
		{[]string{"max-age=4294967296"}, cacheLifetime{maxDeltaSeconds * time.Second, true}},
	}
	for _, tt := range tests {
		if got := parseCacheControl(tt.lines); got != tt.want {
			t.Errorf("parseCacheControl(%q) = %+v, want %+v", tt.lines, got, tt.want)
		}
	}
}

func TestAScheduledFetchWithinMinRefreshOfAnotherIsSkipped(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	s := runScheduled(t, IssuerConfig{Name: "github", IssuerURL: iss.URL(), Audiences: []string{"ferry"}}, Options{})
	d := s.timer.next(t)
	// A token with an unknown kid just before the schedule fires fetches
	// the keys; the scheduled fetch right after it has nothing to add.
	s.clock.Advance(d - time.Second)
	unknown, err := iss.SignWith(iss.Key(), "RS256", "new-kid", sample(t, "github-push-main"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.pool.Verify(context.Background(), unknown)
	mustTokenError(t, err, "is not among the keys")
	s.timer.elapse(t, s.clock, time.Second)
	s.timer.next(t)
	if n := iss.JWKSRequests(); n != 2 {
		t.Errorf("JWKS requests = %d, want 2 (start, unknown kid)", n)
	}
}

// Without the scheduler (a Pool whose Run was never called), keys older
// than the refresh interval are refetched behind the first Verify that
// finds them so, and a withdrawn key stops verifying then.
func TestWithoutTheSchedulerKeysOlderThanTheIntervalAreRefetched(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	claimsNow := func() map[string]any {
		now := e.clock.Now()
		return with(sample(t, "github-push-main"), map[string]any{
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		})
	}
	oldKey, oldKid := e.github.Key(), e.github.KeyID()
	byOldKey := func() string {
		raw, err := e.github.SignWith(oldKey, "RS256", oldKid, claimsNow())
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := e.pool.Verify(ctx, byOldKey()); err != nil {
		t.Fatal(err)
	}
	if err := e.github.RotateKey(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(MaxRefreshInterval - time.Second)
	if _, err := e.pool.Verify(ctx, byOldKey()); err != nil {
		t.Fatalf("the withdrawn key within the interval: %v", err)
	}
	if n := e.github.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS requests within the interval = %d, want 1", n)
	}
	e.clock.Advance(2 * time.Second)
	if _, err := e.pool.Verify(ctx, byOldKey()); err != nil {
		t.Fatalf("the Verify that starts the background refresh still uses the cached key: %v", err)
	}
	waitFetches(t, e.pool.issuers[0].keys, 2)
	_, err := e.pool.Verify(ctx, byOldKey())
	mustTokenError(t, err, "is not among the keys")
	if _, err := e.pool.Verify(ctx, sign(t, e.github, claimsNow())); err != nil {
		t.Errorf("a token signed by the new key: %v", err)
	}
}

func waitFetches(t *testing.T, k *keySet, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for k.stats().fetches < n {
		if time.Now().After(deadline) {
			t.Fatalf("fetches = %d, want %d", k.stats().fetches, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
