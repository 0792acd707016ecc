package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/ferry-broker/ferry/internal/claims"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
)

// writeAuditLog writes records through a real audit.Log and returns the path.
func writeAuditLog(t *testing.T, records []audit.Record) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, audit.NoSync())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if _, err := l.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// recentDecisions are a few decisions of the last days, one of them a denial
// whose reason carries a terminal escape from a hostile claim value.
func recentDecisions() []audit.Record {
	now := time.Now().UTC()
	var rs []audit.Record
	for i := range 3 {
		rs = append(rs, audit.Record{Time: now.Add(-time.Duration(i+1) * time.Hour), RequestID: fmt.Sprint(i), Decision: audit.Allow,
			Policy: "deploy-prod", Claims: []claims.Pair{{Name: "repository", Value: "acme/app"}, {Name: "run_id", Value: fmt.Sprint(100 + i)}}})
	}
	rs = append(rs, audit.Record{Time: now.Add(-30 * time.Minute), RequestID: "d", Decision: audit.Deny, Policy: "deploy-prod",
		Claims: []claims.Pair{{Name: "repository", Value: "acme/fork"}}, Error: "access_denied", Reason: "match.ref: claim ref is \"\x1b[31mrefs/heads/dev\"\ttab"})
	return rs
}

func runAuditArgs(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runAudit(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAuditVerify(t *testing.T) {
	intact := writeAuditLog(t, recentDecisions())
	code, out, errOut := runAuditArgs("verify", intact)
	if code != exitOK {
		t.Fatalf("verify of an intact log exited %d: %s", code, errOut)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != intact+": 4 records, chain intact" {
		t.Errorf("first line = %q, want %q", first, intact+": 4 records, chain intact")
	}
	if !strings.Contains(out, "3 allow, 1 deny") {
		t.Errorf("output lacks the decision counts:\n%s", out)
	}

	b, _ := os.ReadFile(intact)
	lines := strings.SplitAfter(string(b), "\n")
	lines[1] = strings.Replace(lines[1], `"policy":"deploy-prod"`, `"policy":"deploy-dev"`, 1)
	edited := filepath.Join(t.TempDir(), "edited.log")
	os.WriteFile(edited, []byte(strings.Join(lines, "")), 0o600)
	code, out, errOut = runAuditArgs("verify", edited)
	if want := edited + ":2: hash mismatch (record edited)\n"; code != exitFail || errOut != want {
		t.Errorf("verify of an edited log = exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
	if out != "" {
		t.Errorf("a failed verify printed %q to stdout", out)
	}

	removed := filepath.Join(t.TempDir(), "removed.log")
	os.WriteFile(removed, []byte(lines[0]+lines[2]+lines[3]), 0o600)
	code, _, errOut = runAuditArgs("verify", removed)
	if want := removed + ":2: prev does not match line 1's hash (line removed or reordered)\n"; code != exitFail || errOut != want {
		t.Errorf("verify of a log missing a line = exit %d, %q; want 1, %q", code, errOut, want)
	}

	empty := filepath.Join(t.TempDir(), "empty.log")
	os.WriteFile(empty, nil, 0o600)
	if code, out, _ := runAuditArgs("verify", empty); code != exitOK || out != empty+": 0 records, chain intact\n" {
		t.Errorf("verify of an empty log = exit %d, %q", code, out)
	}

	if code, _, errOut := runAuditArgs("verify", filepath.Join(t.TempDir(), "missing.log")); code != exitFail || !strings.Contains(errOut, "no such file") {
		t.Errorf("verify of a missing file = exit %d, %q; want 1 and the reason", code, errOut)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	log := writeAuditLog(t, recentDecisions())
	tests := []struct {
		name string
		args []string
	}{
		{"no subcommand", nil},
		{"an unknown subcommand", []string{"tail", log}},
		{"verify without a file", []string{"verify"}},
		{"verify with two files", []string{"verify", log, log}},
		{"verify with an unknown flag", []string{"verify", "--fast", log}},
		{"verify with --jwks but no --checkpoints", []string{"verify", log, "--jwks", log}},
		{"report without a file", []string{"report"}},
		{"report in an unknown format", []string{"report", log, "--format", "yaml"}},
		{"report with a negative window", []string{"report", log, "--window", "-1h"}},
		{"report with a window that is not a duration", []string{"report", log, "--window", "30 days"}},
		{"report with a zero threshold", []string{"report", log, "--threshold", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runAuditArgs(tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want 2 (stdout %q, stderr %q)", code, out, errOut)
			}
			if errOut == "" {
				t.Error("a usage error printed nothing to stderr")
			}
		})
	}
}

func TestAuditReportTable(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"deploy-prod", "nightly-backup"} {
		policy := fmt.Sprintf(`name: %s
issuer: github
match:
  repository: acme/app
grant:
  token:
    audience: https://internal.example
    duration: 5m
`, name)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := writeAuditLog(t, recentDecisions())
	code, out, errOut := runAuditArgs("report", log, "--policies", dir)
	if code != exitOK {
		t.Fatalf("report exited %d: %s", code, errOut)
	}
	for _, want := range []string{
		": 4 records from ",
		"3 allow, 1 deny",
		"Dormant policies (no allow in the window)\n  POLICY          LAST ALLOW\n  nightly-backup  never\n",
		"  deploy-prod     3       1       ",
		"Repeated requests\n  none\n",
		`access_denied  match.ref: claim ref is "?[31mrefs/heads/dev"?tab  deploy-prod`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, '\x1b') {
		t.Error("a terminal escape from the log reached the table")
	}

	code, out, _ = runAuditArgs("report", log)
	if code != exitOK || !strings.Contains(out, "not checked: pass --policies DIR") {
		t.Errorf("report without --policies = exit %d:\n%s", code, out)
	}

	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "broken.yaml"), []byte("name: [\n"), 0o600)
	if code, _, errOut := runAuditArgs("report", log, "--policies", bad); code != exitFail || !strings.Contains(errOut, "broken.yaml") {
		t.Errorf("report with a broken policy dir = exit %d, %q; want 1 naming the file", code, errOut)
	}
}

func TestAuditReportJSON(t *testing.T) {
	log := writeAuditLog(t, recentDecisions())
	code, out, errOut := runAuditArgs("report", "--format", "json", "--window", "150m", log)
	if code != exitOK {
		t.Fatalf("report exited %d: %s", code, errOut)
	}
	var res struct {
		Records int `json:"records"`
		Allows  int `json:"allows"`
		Denials []struct {
			Error  string `json:"error"`
			Reason string `json:"reason"`
			Count  int    `json:"count"`
		} `json:"denials"`
		DormancyChecked bool `json:"dormancy_checked"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	// The 2.5h window leaves out the allow from three hours ago.
	if res.Records != 3 || res.Allows != 2 || len(res.Denials) != 1 || res.Denials[0].Count != 1 || res.DormancyChecked {
		t.Errorf("report = %+v, want 3 records, 2 allows, one denial group, dormancy unchecked", res)
	}
	if !strings.Contains(res.Denials[0].Reason, "\x1b[31m") {
		t.Errorf("JSON should carry the reason unchanged, got %q", res.Denials[0].Reason)
	}
}

func TestAuditReportOnABrokenChainWarnsAndFails(t *testing.T) {
	log := writeAuditLog(t, recentDecisions())
	b, _ := os.ReadFile(log)
	os.WriteFile(log, bytes.Replace(b, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1), 0o600)
	code, out, errOut := runAuditArgs("report", log)
	if code != exitFail {
		t.Errorf("report on a tampered log exited %d, want 1", code)
	}
	if !strings.Contains(out, "4 allow, 0 deny") {
		t.Errorf("the report should still be printed:\n%s", out)
	}
	if !strings.Contains(errOut, "hash chain broken at line 4: hash mismatch") {
		t.Errorf("stderr = %q, want a chain warning naming line 4", errOut)
	}
}
