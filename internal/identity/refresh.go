package identity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Scheduled refetching. An issuer that withdraws a key (it leaked, or was
// rotated out) expects verifiers to stop trusting it soon; a refetch on an
// unknown kid alone never notices, since tokens signed by the withdrawn key
// carry a kid that is still cached. So each issuer's keys are also
// refetched on a schedule: at most every RefreshInterval (15 minutes at
// most), sooner when the JWKS response's Cache-Control says so, never
// sooner than MinRefresh, and a little earlier at random so that replicas
// started together do not fetch together. A failed fetch keeps the last
// good keys, retries with back-off, and shows in /metrics and /readyz.

// Run refetches every issuer's keys on the schedule until ctx ends. The
// broker calls it once, from Serve; Verify works without it (keys are then
// fetched on demand and refetched in the background once older than
// RefreshInterval).
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, is := range p.issuers {
		wg.Go(func() { is.keys.run(ctx) })
	}
	wg.Wait()
}

func (k *keySet) run(ctx context.Context) {
	for {
		k.mu.Lock()
		d := k.nextWait(rand.Int64N)
		k.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-k.after(d):
		}
		// Within minRefresh of another fetch (a token's unknown kid, say)
		// startRefresh does nothing: those keys are fresh enough.
		k.mu.Lock()
		done := k.startRefresh(ctx)
		k.mu.Unlock()
		if wait(ctx, done) != nil {
			return
		}
	}
}

// maxBackoffDoublings bounds the back-off's shift; interval caps it anyway.
const maxBackoffDoublings = 10

// nextWait is how long the scheduler sleeps before the next fetch: at once
// when none was tried; after a failure, minRefresh doubling per failure in
// a row; otherwise interval, or the last Cache-Control lifetime when
// shorter. Then up to a fifth less at random (randN(n) is in [0, n)), and
// never below minRefresh, so an issuer that says max-age=0 is not
// hammered. Caller holds mu.
func (k *keySet) nextWait(randN func(int64) int64) time.Duration {
	if k.attemptedAt.IsZero() {
		return 0
	}
	d := k.interval
	switch {
	case k.lastErr != nil || len(k.keys) == 0:
		shift := min(max(k.failedRun-1, 0), maxBackoffDoublings)
		d = min(k.minRefresh<<shift, k.interval)
	case k.hasMaxAge && k.maxAge < d:
		d = k.maxAge
	}
	if d > 0 {
		d -= time.Duration(randN(int64(d/5) + 1))
	}
	return max(d, k.minRefresh)
}

// cacheLifetime is what a response's Cache-Control says about how long
// its content stays fresh; ok is false when it says nothing.
type cacheLifetime struct {
	maxAge time.Duration
	ok     bool
}

// maxDeltaSeconds is what an overflowing max-age counts as (RFC 9111
// section 1.2.2): far more than the schedule's cap.
const maxDeltaSeconds = 1 << 31

// parseCacheControl reads max-age, no-cache and no-store from the
// Cache-Control field lines of a response. Where directives conflict the
// most restrictive wins, and a max-age that is not a number counts as
// already stale (RFC 9111 section 4.2.1); either way the schedule's floor
// applies.
func parseCacheControl(lines []string) cacheLifetime {
	var out cacheLifetime
	shorten := func(d time.Duration) {
		if !out.ok || d < out.maxAge {
			out.maxAge = d
		}
		out.ok = true
	}
	for _, line := range lines {
		for _, dir := range strings.Split(line, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-cache", "no-store":
				shorten(0)
			case "max-age":
				shorten(deltaSeconds(strings.Trim(strings.TrimSpace(arg), `"`)))
			}
		}
	}
	return out
}

func deltaSeconds(s string) time.Duration {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxDeltaSeconds {
		n = maxDeltaSeconds
	}
	return time.Duration(n) * time.Second
}

// staleProblem describes an issuer whose keys are cached but whose last
// fetch failed: its tokens still verify, with keys that may be out of
// date. It holds no fetch error (those name internal hosts, and are in the
// log). Empty when the issuer is not stale.
func (k *keySet) staleProblem() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lastErr == nil || len(k.keys) == 0 {
		return ""
	}
	return fmt.Sprintf("issuer %q: key refresh failed at %s; still verifying with the %d keys fetched at %s",
		k.issuer, k.failedAt.UTC().Format(time.RFC3339), len(k.keys), k.fetchedAt.UTC().Format(time.RFC3339))
}

// keyStats is one issuer's key freshness, read for /metrics.
type keyStats struct {
	keys              int
	fetchedAt         time.Time
	fetches, failures uint64
	stale             bool
}

func (k *keySet) stats() keyStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	return keyStats{
		keys: len(k.keys), fetchedAt: k.fetchedAt,
		fetches: k.fetches, failures: k.failures,
		stale: k.lastErr != nil && len(k.keys) > 0,
	}
}

// Collector exposes each issuer's key freshness as Prometheus metrics,
// read from the pool at every scrape. Register it once per registry.
func (p *Pool) Collector() prometheus.Collector {
	label := []string{"issuer"}
	return &keyCollector{
		pool: p,
		keys: prometheus.NewDesc("ferry_issuer_keys",
			"Verification keys cached for the issuer (0: its tokens cannot be verified).", label, nil),
		lastSuccess: prometheus.NewDesc("ferry_issuer_keys_last_success_timestamp_seconds",
			"When the issuer's keys were last fetched successfully, as Unix time; 0 if never.", label, nil),
		fetches: prometheus.NewDesc("ferry_issuer_key_refreshes_total",
			"Fetches of the issuer's keys, scheduled or on an unknown kid, finished either way.", label, nil),
		failures: prometheus.NewDesc("ferry_issuer_key_refresh_failures_total",
			"Fetches of the issuer's keys that failed; the last good keys are kept.", label, nil),
		stale: prometheus.NewDesc("ferry_issuer_keys_stale",
			"1 while the issuer's last key fetch failed and the keys from an earlier one are still used.", label, nil),
	}
}

type keyCollector struct {
	pool                                        *Pool
	keys, lastSuccess, fetches, failures, stale *prometheus.Desc
}

func (c *keyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.keys, c.lastSuccess, c.fetches, c.failures, c.stale} {
		ch <- d
	}
}

func (c *keyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, is := range c.pool.issuers {
		s := is.keys.stats()
		name := is.cfg.Name
		var last, stale float64
		if !s.fetchedAt.IsZero() {
			last = float64(s.fetchedAt.UnixNano()) / 1e9
		}
		if s.stale {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(s.keys), name)
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, last, name)
		ch <- prometheus.MustNewConstMetric(c.fetches, prometheus.CounterValue, float64(s.fetches), name)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(s.failures), name)
		ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, stale, name)
	}
}
