package policystore

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorCountsReloadsAndSaysWhileTheFilesAreBroken(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "deploy.yaml", awsPolicy("deploy", "deploy"))
	s, err := Open(dir, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Collector()
	want := func(step, text string) {
		t.Helper()
		if err := testutil.CollectAndCompare(c, strings.NewReader(text),
			"ferry_policy_reloads_total", "ferry_policy_reload_failing", "ferry_policies_loaded"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	const head = `
# HELP ferry_policies_loaded Policies in the live set.
# TYPE ferry_policies_loaded gauge
# HELP ferry_policy_reload_failing 1 while the policy files on disk do not load and the last good set is served.
# TYPE ferry_policy_reload_failing gauge
# HELP ferry_policy_reloads_total Policy reloads (at start, on the interval, on SIGHUP) by result: installed, unchanged, failed (the last good set stays live).
# TYPE ferry_policy_reloads_total counter
`
	want("after Open", head+`ferry_policies_loaded 1
ferry_policy_reload_failing 0
ferry_policy_reloads_total{result="failed"} 0
ferry_policy_reloads_total{result="installed"} 1
ferry_policy_reloads_total{result="unchanged"} 0
`)
	s.Reload()
	write(t, dir, "deploy.yaml", brokenRole)
	s.Reload()
	s.Reload() // the same broken files: a failure again
	want("while broken", head+`ferry_policies_loaded 1
ferry_policy_reload_failing 1
ferry_policy_reloads_total{result="failed"} 2
ferry_policy_reloads_total{result="installed"} 1
ferry_policy_reloads_total{result="unchanged"} 1
`)
	write(t, dir, "deploy.yaml", awsPolicy("deploy", "deploy"))
	write(t, dir, "token.yaml", tokenPolicy)
	s.Reload()
	want("fixed", head+`ferry_policies_loaded 2
ferry_policy_reload_failing 0
ferry_policy_reloads_total{result="failed"} 2
ferry_policy_reloads_total{result="installed"} 2
ferry_policy_reloads_total{result="unchanged"} 1
`)
	if n := testutil.CollectAndCount(c, "ferry_policy_last_reload_success_timestamp_seconds"); n != 1 {
		t.Errorf("%d last-success series, want 1", n)
	}
}
