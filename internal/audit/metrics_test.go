package audit

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorCountsRecordsAndCommits(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 5 {
		if _, err := l.Write(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A lone writer: one commit a record, none held.
	want := `
# HELP ferry_audit_commits_total Commits (one write and one fsync each) that carried the audit records.
# TYPE ferry_audit_commits_total counter
ferry_audit_commits_total 5
# HELP ferry_audit_held_commits_total Commits whose leader held its fsync, at most two fsync times, for the writers it expected.
# TYPE ferry_audit_held_commits_total counter
ferry_audit_held_commits_total 0
# HELP ferry_audit_records_total Audit records this broker wrote and committed.
# TYPE ferry_audit_records_total counter
ferry_audit_records_total 5
`
	if err := testutil.CollectAndCompare(l.Collector(), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
