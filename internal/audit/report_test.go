package audit

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"github.com/ferry-broker/ferry/internal/claims"
	"reflect"
	"strings"
	"testing"
	"time"
)

// reportNow ends the report window in these tests.
var reportNow = t0.Add(40 * 24 * time.Hour)

type entry struct {
	ago      time.Duration // before reportNow
	decision string
	policy   string
	repo     string
	run      string
	errCode  string
	reason   string
}

func buildLog(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	l := New(&buf, Genesis)
	for i, e := range entries {
		r := Record{Time: reportNow.Add(-e.ago), RequestID: fmt.Sprint(i), Decision: e.decision, Policy: e.policy,
			Claims: []claims.Pair{{Name: "repository", Value: e.repo}, {Name: "run_id", Value: e.run}}, Error: e.errCode, Reason: e.reason}
		if _, err := l.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// reportLog is a month and more of decisions with one of each finding.
func reportLog(t *testing.T) []byte {
	day := 24 * time.Hour
	var es []entry
	allow := func(ago time.Duration, policy, repo, run string) {
		es = append(es, entry{ago: ago, decision: Allow, policy: policy, repo: repo, run: run})
	}
	deny := func(ago time.Duration, policy, repo, code, reason string) {
		es = append(es, entry{ago: ago, decision: Deny, policy: policy, repo: repo, run: fmt.Sprint(len(es)), errCode: code, reason: reason})
	}
	// Outside the window: deploy-staging's last allow, and an old denial.
	allow(35*day, "deploy-staging", "acme/app", "1")
	deny(34*day, "deploy-staging", "acme/app", "invalid_token", "token expired")
	// Inside the window.
	for i := range 3 {
		allow(time.Duration(20-i)*day, "deploy-prod", "acme/app", fmt.Sprint(100+i))
	}
	allow(3*day, "removed-policy", "acme/old", "200")
	// A retry loop: 12 requests in 30 minutes, each its own run.
	for i := range 12 {
		allow(2*day-time.Duration(i)*150*time.Second, "deploy-prod", "acme/loop", fmt.Sprint(300+i))
	}
	// Exactly the threshold in an hour: not reported.
	for i := range 10 {
		allow(5*day-time.Duration(i)*5*time.Minute, "deploy-prod", "acme/steady", fmt.Sprint(400+i))
	}
	// One run asking 11 times over three hours: a same-run finding only.
	for i := range 11 {
		allow(6*day-time.Duration(i)*18*time.Minute, "deploy-prod", "acme/multi", "777")
	}
	for range 3 {
		deny(1*day, "deploy-prod", "acme/fork", "access_denied", `match.ref: claim ref is "refs/heads/dev"`)
	}
	deny(1*day, "deploy-staging", "acme/fork", "access_denied", `match.ref: claim ref is "refs/heads/dev"`)
	deny(1*day, "deploy-prod", "acme/app", "invalid_token", "token replayed")
	deny(1*day, "deploy-prod", "acme/app", "invalid_token", "token replayed")
	deny(1*day, "", "acme/app", "access_denied", "unknown policy")
	return buildLog(t, es)
}

func TestReportFindsDormantPolicies(t *testing.T) {
	res, err := Report(bytes.NewReader(reportLog(t)), ReportOptions{Job: repoAndRun,
		Policies: []string{"never-used", "deploy-prod", "deploy-staging"},
		Now:      reportNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []DormantPolicy{
		{Name: "deploy-staging", LastAllow: reportNow.Add(-35 * 24 * time.Hour)},
		{Name: "never-used"},
	}
	if !reflect.DeepEqual(res.Dormant, want) {
		t.Errorf("Dormant = %+v, want %+v", res.Dormant, want)
	}
	if !res.DormancyChecked {
		t.Error("DormancyChecked = false with policy names given")
	}
	if res.ChainError != "" || res.Skipped != 0 {
		t.Errorf("intact log reported chain error %q, %d skipped", res.ChainError, res.Skipped)
	}
}

func TestReportCountsDecisionsPerPolicyInTheWindow(t *testing.T) {
	res, err := Report(bytes.NewReader(reportLog(t)), ReportOptions{Job: repoAndRun, Policies: []string{"deploy-prod", "never-used"}, Now: reportNow})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 44 || res.Allows != 37 || res.Denies != 7 {
		t.Errorf("window has %d records, %d allows, %d denies; want 44, 37, 7", res.Records, res.Allows, res.Denies)
	}
	got := map[string][2]int{}
	for _, p := range res.Policies {
		got[p.Name] = [2]int{p.Allows, p.Denies}
	}
	want := map[string][2]int{
		"deploy-prod":    {36, 5},
		"deploy-staging": {0, 1},
		"removed-policy": {1, 0},
		"never-used":     {0, 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("per policy [allows, denies] = %v, want %v", got, want)
	}
	if !res.From.Equal(reportNow.Add(-DefaultReportWindow)) || !res.To.Equal(reportNow) {
		t.Errorf("window = %v .. %v, want 30 days up to %v", res.From, res.To, reportNow)
	}
}

func TestReportFindsRepeatedRequests(t *testing.T) {
	res, err := Report(bytes.NewReader(reportLog(t)), ReportOptions{Job: repoAndRun, Now: reportNow})
	if err != nil {
		t.Fatal(err)
	}
	want := []RepeatedRequest{
		{Kind: RepeatedPerHour, Identity: "acme/loop", Policy: "deploy-prod", Count: 12,
			First: reportNow.Add(-2 * 24 * time.Hour), Last: reportNow.Add(-2*24*time.Hour + 11*150*time.Second)},
		{Kind: RepeatedSameRun, Identity: "acme/multi", RunID: "777", Count: 11,
			First: reportNow.Add(-6 * 24 * time.Hour), Last: reportNow.Add(-6*24*time.Hour + 10*18*time.Minute)},
	}
	if !reflect.DeepEqual(res.Repeated, want) {
		t.Errorf("Repeated =\n%+v\nwant\n%+v", res.Repeated, want)
	}
	if res.DormancyChecked || len(res.Dormant) != 0 {
		t.Errorf("without policy names: DormancyChecked = %v, Dormant = %v; want false, none", res.DormancyChecked, res.Dormant)
	}

	res, _ = Report(bytes.NewReader(reportLog(t)), ReportOptions{Job: repoAndRun, Now: reportNow, Threshold: 9})
	var steady bool
	for _, r := range res.Repeated {
		steady = steady || r.Identity == "acme/steady"
	}
	if !steady {
		t.Errorf("with threshold 9, ten requests in an hour were not reported: %+v", res.Repeated)
	}
}

func TestReportGroupsDenialsByErrorAndReason(t *testing.T) {
	res, err := Report(bytes.NewReader(reportLog(t)), ReportOptions{Job: repoAndRun, Now: reportNow, Top: 2})
	if err != nil {
		t.Fatal(err)
	}
	day := reportNow.Add(-24 * time.Hour)
	want := []DenialGroup{
		{Error: "access_denied", Reason: `match.ref: claim ref is "refs/heads/dev"`, Count: 4, Policies: []string{"deploy-prod", "deploy-staging"}, Last: day},
		{Error: "invalid_token", Reason: "token replayed", Count: 2, Policies: []string{"deploy-prod"}, Last: day},
	}
	if !reflect.DeepEqual(res.Denials, want) {
		t.Errorf("Denials =\n%+v\nwant\n%+v", res.Denials, want)
	}
	if res.DenialGroups != 3 {
		t.Errorf("DenialGroups = %d, want 3 (the old expired-token denial is outside the window)", res.DenialGroups)
	}
}

func TestReportNotesABrokenChainButStillReports(t *testing.T) {
	log := string(reportLog(t))
	lines := strings.SplitAfter(log, "\n")
	lines[4] = strings.Replace(lines[4], `"decision":"allow"`, `"decision":"deny"`, 1)
	tampered := strings.Join(lines[:7], "") + "not json\n" + strings.Join(lines[7:], "")
	res, err := Report(strings.NewReader(tampered), ReportOptions{Job: repoAndRun, Now: reportNow})
	if err != nil {
		t.Fatal(err)
	}
	if res.ChainError != "line 5: hash mismatch (record edited)" {
		t.Errorf("ChainError = %q, want line 5's hash mismatch", res.ChainError)
	}
	if res.Skipped != 1 || res.Records != 44 {
		t.Errorf("Skipped = %d, Records = %d; want 1, 44", res.Skipped, res.Records)
	}
}

func TestBusiestHour(t *testing.T) {
	at := func(mins ...int) []time.Time {
		var ts []time.Time
		for _, m := range mins {
			ts = append(ts, t0.Add(time.Duration(m)*time.Minute))
		}
		return ts
	}
	tests := []struct {
		name  string
		times []time.Time
		count int
		first int
	}{
		{"one request is a busiest hour of one", at(5), 1, 5},
		{"requests exactly an hour apart fall in different hours", at(0, 60, 120), 1, 0},
		{"the densest hour wins wherever it starts", at(0, 70, 80, 90, 131, 200), 3, 70},
		{"unsorted input is sorted first", at(90, 0, 80, 70), 3, 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count, first, _ := busiestHour(tt.times)
			if count != tt.count || !first.Equal(t0.Add(time.Duration(tt.first)*time.Minute)) {
				t.Errorf("busiestHour = %d from %v, want %d from +%dm", count, first, tt.count, tt.first)
			}
		})
	}
}

// repoAndRun names a job as GitHub's platform does, from the claims these
// tests write.
func repoAndRun(subject string, c []claims.Pair) (string, string) {
	r := Record{Claims: c}
	return cmp.Or(r.Claim("repository"), subject), r.Claim("run_id")
}
