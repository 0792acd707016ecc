package policystore

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadStats count reloads for the metrics; the Store's mutex guards them.
type reloadStats struct {
	installed, unchanged, failed uint64
	failing                      bool      // the last reload failed: the last good set is served
	installedAt                  time.Time // when the live set was installed
}

func (r *reloadStats) record(changed bool, err error, now time.Time) {
	r.failing = err != nil
	switch {
	case err != nil:
		r.failed++
	case changed:
		r.installed++
		r.installedAt = now
	default:
		r.unchanged++
	}
}

// Collector exposes reloads as Prometheus metrics, read from the store at
// every scrape: how many installed a new set, found nothing changed, or
// failed (the last good set staying live), whether the files on disk are
// broken now, when the live set was installed and how many policies it
// holds. Register it once per registry.
func (s *Store) Collector() prometheus.Collector {
	return &reloadCollector{
		s: s,
		reloads: prometheus.NewDesc("ferry_policy_reloads_total",
			"Policy reloads (at start, on the interval, on SIGHUP) by result: installed, unchanged, failed (the last good set stays live).",
			[]string{"result"}, nil),
		failing: prometheus.NewDesc("ferry_policy_reload_failing",
			"1 while the policy files on disk do not load and the last good set is served.", nil, nil),
		installedAt: prometheus.NewDesc("ferry_policy_last_reload_success_timestamp_seconds",
			"When the live policy set was installed, as Unix time.", nil, nil),
		policies: prometheus.NewDesc("ferry_policies_loaded", "Policies in the live set.", nil, nil),
	}
}

type reloadCollector struct {
	s                                       *Store
	reloads, failing, installedAt, policies *prometheus.Desc
}

func (c *reloadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.reloads, c.failing, c.installedAt, c.policies} {
		ch <- d
	}
}

func (c *reloadCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	st := c.s.stats
	c.s.mu.Unlock()
	var failing, at, n float64
	if st.failing {
		failing = 1
	}
	if !st.installedAt.IsZero() {
		at = float64(st.installedAt.UnixNano()) / 1e9
	}
	if set := c.s.Current(); set != nil {
		n = float64(set.Len())
	}
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(st.installed), "installed")
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(st.unchanged), "unchanged")
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(st.failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, failing)
	ch <- prometheus.MustNewConstMetric(c.installedAt, prometheus.GaugeValue, at)
	ch <- prometheus.MustNewConstMetric(c.policies, prometheus.GaugeValue, n)
}
