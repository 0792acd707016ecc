package exchange

import (
	"errors"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferry-broker/ferry/internal/grant"
)

// Metrics are the broker's Prometheus metrics, on a registry of its own so
// tests and several brokers in one process never collide. deploy/grafana's
// dashboard charts them; its test checks that each one it queries exists.
type Metrics struct {
	Registry  *prometheus.Registry
	exchanges *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	stages    *prometheus.HistogramVec
	stageObs  map[string]prometheus.Observer
	limited   *prometheus.CounterVec
	replays   prometheus.Counter
	upErrors  *prometheus.CounterVec
	upCalls   *prometheus.CounterVec
	upRetries *prometheus.CounterVec
	upFlight  *prometheus.GaugeVec
	upFull    *prometheus.CounterVec
	// knownPolicy guards label cardinality: a caller can name any policy, so
	// an unknown name is counted as "unknown" rather than minting a series.
	knownPolicy func(string) bool
}

// The stages of an exchange, as ferry_exchange_stage_duration_seconds
// labels them.
const (
	stageVerify = "verify" // the token's signature and claims
	stageDecide = "decide" // the policy's conditions
	stageLimit  = "limit"  // the per-repository and per-policy rate limits
	stageReplay = "replay" // the single-use claim of the token's jti
	stageMint   = "mint"   // the provider's call, retries included
	stageAudit  = "audit"  // the audit record, on disk
)

// Rate-limit scopes, as ferry_rate_limited_total labels them.
const (
	limitClientIP   = "client_ip"   // rate_limit.per_second, per client address
	limitClientCap  = "client_cap"  // a new address refused at rate_limit.max_clients
	limitRepository = "repository"  // rate_limit.per_repository
	limitPolicy     = "policy"      // rate_limit.per_policy
	limitKeysFull   = "limiter_cap" // a per-repository or per-policy limiter out of room
)

// NewMetrics registers the broker's metrics. knownPolicy reports whether a
// policy name may be used as a label; kinds are the grant kinds, whose
// series start at zero so that a dashboard sees them before any failure.
func NewMetrics(knownPolicy func(string) bool, kinds ...string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_exchanges_total",
			Help: "Credential exchanges by policy, decision (allow, deny) and error code.",
		}, []string{"policy", "decision", "error"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_exchange_duration_seconds",
			Help:    "Time to decide an exchange, including minting.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"decision"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_exchange_stage_duration_seconds",
			Help:    "Time an exchange spent in each stage: verify, decide, limit, replay, mint (retries included), audit.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 14),
		}, []string{"stage"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rate_limited_total",
			Help: "Requests refused with 429 by each rate limit: client_ip, client_cap, repository, policy, limiter_cap.",
		}, []string{"limit"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_replay_hits_total",
			Help: "Exchanges refused because their token's jti was already used for the policy.",
		}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_upstream_errors_total",
			Help: "Failed calls to a grant kind's provider, by kind, provider, provider error code and whether it was transient.",
		}, []string{"kind", "provider", "code", "transient"}),
		upCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_upstream_calls_total",
			Help: "Calls to a grant kind's provider, retries included, by kind and result (ok, error).",
		}, []string{"kind", "result"}),
		upRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_upstream_retries_total",
			Help: "Transient provider failures retried after a backoff.",
		}, []string{"kind"}),
		upFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_upstream_in_flight",
			Help: "Calls to a grant kind's provider in flight now.",
		}, []string{"kind"}),
		upFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_upstream_saturated_total",
			Help: "Exchanges refused (503) because the kind's cap on calls in flight stayed full until the mint timeout.",
		}, []string{"kind"}),
		knownPolicy: knownPolicy,
	}
	reg.MustRegister(m.exchanges, m.latency, m.stages, m.limited, m.replays,
		m.upErrors, m.upCalls, m.upRetries, m.upFlight, m.upFull,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Each stage's observer is looked up once: the request path only
	// observes.
	m.stageObs = make(map[string]prometheus.Observer, 6)
	for _, s := range []string{stageVerify, stageDecide, stageLimit, stageReplay, stageMint, stageAudit} {
		m.stageObs[s] = m.stages.WithLabelValues(s)
	}
	for _, l := range []string{limitClientIP, limitClientCap, limitRepository, limitPolicy, limitKeysFull} {
		m.limited.WithLabelValues(l)
	}
	for _, k := range kinds {
		m.upCalls.WithLabelValues(k, "ok")
		m.upCalls.WithLabelValues(k, "error")
		m.upRetries.WithLabelValues(k)
		m.upFlight.WithLabelValues(k)
		m.upFull.WithLabelValues(k)
	}
	return m
}

func (m *Metrics) observe(policy, decision, code string, took time.Duration) {
	if m == nil {
		return
	}
	if m.knownPolicy == nil || !m.knownPolicy(policy) {
		policy = "unknown"
	}
	m.exchanges.WithLabelValues(policy, decision, code).Inc()
	m.latency.WithLabelValues(decision).Observe(took.Seconds())
}

// stage records the time spent in a stage since start and returns now, the
// start of the next.
func (m *Metrics) stage(name string, start, now time.Time) time.Time {
	if m != nil {
		m.stageObs[name].Observe(now.Sub(start).Seconds())
	}
	return now
}

func (m *Metrics) rateLimited(scope string) {
	if m != nil {
		m.limited.WithLabelValues(scope).Inc()
	}
}

func (m *Metrics) replayHit() {
	if m != nil {
		m.replays.Inc()
	}
}

// RetryHooks are the hooks grant.Retrying reports each kind's provider
// calls to.
func (m *Metrics) RetryHooks() grant.RetryHooks {
	if m == nil {
		return grant.RetryHooks{}
	}
	return grant.RetryHooks{
		Attempt: func(kind string, err error, retry bool) {
			if err == nil {
				m.upCalls.WithLabelValues(kind, "ok").Inc()
				return
			}
			m.upCalls.WithLabelValues(kind, "error").Inc()
			if retry {
				m.upRetries.WithLabelValues(kind).Inc()
			}
			var up *grant.UpstreamError
			if errors.As(err, &up) {
				m.upErrors.WithLabelValues(kind, up.Provider, codeLabel(up.Code), strconv.FormatBool(up.Transient)).Inc()
			}
		},
		InFlight:  func(kind string, n int) { m.upFlight.WithLabelValues(kind).Set(float64(n)) },
		Saturated: func(kind string) { m.upFull.WithLabelValues(kind).Inc() },
	}
}

// plainCode is what a provider's error code looks like (AccessDenied,
// RESOURCE_EXHAUSTED, IAM_PERMISSION_DENIED); anything else, which a
// misbehaving endpoint could vary without end, is counted as "other".
var plainCode = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,63}$`)

func codeLabel(code string) string {
	switch {
	case code == "":
		return "none"
	case plainCode.MatchString(code):
		return code
	}
	return "other"
}
