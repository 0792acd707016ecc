package exchange

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the broker's Prometheus metrics, on a registry of its own so
// tests and several brokers in one process never collide.
type Metrics struct {
	Registry  *prometheus.Registry
	exchanges *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	limited   prometheus.Counter
	// knownPolicy guards label cardinality: a caller can name any policy, so
	// an unknown name is counted as "unknown" rather than minting a series.
	knownPolicy func(string) bool
}

// NewMetrics registers the broker's metrics. knownPolicy reports whether a
// policy name may be used as a label.
func NewMetrics(knownPolicy func(string) bool) *Metrics {
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
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_rate_limited_total",
			Help: "Requests refused by the rate limiter before any token work.",
		}),
		knownPolicy: knownPolicy,
	}
	reg.MustRegister(m.exchanges, m.latency, m.limited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

func (m *Metrics) rateLimited() {
	if m != nil {
		m.limited.Inc()
	}
}
