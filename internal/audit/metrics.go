package audit

import "github.com/prometheus/client_golang/prometheus"

// Collector exports how the Log commits: the records it wrote, the
// write(2)+fsync rounds that carried them (records per commit is the
// group commit's yield), and the commits whose leader held its fsync for
// writers it expected.
func (l *Log) Collector() prometheus.Collector {
	return &commitCollector{
		l: l,
		records: prometheus.NewDesc("ferry_audit_records_total",
			"Audit records this broker wrote and committed.", nil, nil),
		commits: prometheus.NewDesc("ferry_audit_commits_total",
			"Commits (one write and one fsync each) that carried the audit records.", nil, nil),
		held: prometheus.NewDesc("ferry_audit_held_commits_total",
			"Commits whose leader held its fsync, at most two fsync times, for the writers it expected.", nil, nil),
	}
}

type commitCollector struct {
	l                      *Log
	records, commits, held *prometheus.Desc
}

func (c *commitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.records
	ch <- c.commits
	ch <- c.held
}

func (c *commitCollector) Collect(ch chan<- prometheus.Metric) {
	c.l.mu.Lock()
	records, commits, held := c.l.appended, c.l.commits, c.l.held
	c.l.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(records))
	ch <- prometheus.MustNewConstMetric(c.commits, prometheus.CounterValue, float64(commits))
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.CounterValue, float64(held))
}
