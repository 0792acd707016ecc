package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// counters are a broker's own counters, read from its /metrics before and
// after a round: the CPU the process used, which is steadier than a ratio
// on a shared machine, and the audit records and commits (fsyncs), whose
// ratio is what group commit achieved. A counter the broker does not
// export (an older build) reads as -1.
type counters struct {
	cpuSeconds, records, commits float64
}

var counterNames = []string{"process_cpu_seconds_total", "ferry_audit_records_total", "ferry_audit_commits_total"}

func readCounters(ctx context.Context, client *http.Client, base string) counters {
	c := counters{-1, -1, -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return c
	}
	resp, err := client.Do(req)
	if err != nil {
		return c
	}
	defer resp.Body.Close()
	vals := []*float64{&c.cpuSeconds, &c.records, &c.commits}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for i, n := range counterNames {
			if name == n {
				if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					*vals[i] = v
				}
			}
		}
	}
	return c
}

// perRequest is what a round of n requests cost the broker: CPU per
// request and audit records per commit, or 0 where a counter is missing.
func perRequest(before, after counters, n int) (cpu time.Duration, recordsPerCommit float64) {
	if n > 0 && before.cpuSeconds >= 0 && after.cpuSeconds >= 0 {
		cpu = time.Duration((after.cpuSeconds - before.cpuSeconds) / float64(n) * float64(time.Second))
	}
	if commits := after.commits - before.commits; before.commits >= 0 && commits > 0 {
		recordsPerCommit = (after.records - before.records) / commits
	}
	return cpu, recordsPerCommit
}

func us(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

func perCommit(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", r)
}

// perRequestCPU is the CPU a round of n requests took from a process
// whose CPU time read before and after, or 0 when either is unknown.
func perRequestCPU(before, after time.Duration, n int) time.Duration {
	if n <= 0 || before < 0 || after < before {
		return 0
	}
	return (after - before) / time.Duration(n)
}
