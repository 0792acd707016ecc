package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// oneDecisionPolicy has a rule of every kind: a match key, a deny block and
// a template the token's claims must be able to fill.
const oneDecisionPolicy = `issuer: github
match:
  repository: acme/app
  ref: refs/heads/main
deny:
  - actor: "*[bot]"
grant:
  token:
    audience: https://artifacts.internal.example
    extra_claims:
      scope: "deploy/{{environment}}"
`

// TestPolicyTestExplainAndExchangeDecideAlike shows that `ferry policy
// test`, `ferry policy explain` and POST /v1/exchange of a running `ferry
// serve` reach the same decision by the same rule for the same claims.
func TestPolicyTestExplainAndExchangeDecideAlike(t *testing.T) {
	cases := []struct {
		name   string
		sample string
		edit   map[string]any
		rule   string // "match" when allowed
	}{
		{"a production deploy from main", "github-environment-production", nil, "match"},
		{"a run on another branch", "github-environment-production", map[string]any{"ref": "refs/heads/dev"}, "match.ref"},
		{"a bot's run", "github-environment-production", map[string]any{"actor": "dependabot[bot]"}, "deny[0].actor"},
		{"a run without the environment the grant names", "github-push-main", nil, "grant"},
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("deploy.yaml", oneDecisionPolicy)
	claimsOf := func(sample string, edit map[string]any) map[string]any {
		c, err := devissuer.SampleClaims(sample)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range edit {
			c[k] = v
		}
		return c
	}

	// 1. ferry policy test: a test file whose cases expect these rules.
	var tf strings.Builder
	tf.WriteString("cases:\n")
	for _, tc := range cases {
		expect := "deny"
		if tc.rule == "match" {
			expect = "allow"
		}
		body, err := json.Marshal(claimsOf(tc.sample, tc.edit))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&tf, "  - name: %s\n    claims: %s\n    expect: %s\n    rule: %s\n", tc.name, body, expect, tc.rule)
	}
	write("deploy.test.yaml", tf.String())
	if r := runBin(t, nil, "policy", "test", dir); r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d passed, 0 failed", len(cases))) {
		t.Fatalf("ferry policy test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := os.Remove(filepath.Join(dir, "deploy.test.yaml")); err != nil {
		t.Fatal(err)
	}

	gh, gl := issuers.Start(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	srv := startServe(t, ferryproc.Config(t, dir, gh.URL(), gl.URL(), auditPath), nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// 2. ferry policy explain: its verdict line names the rule.
			claimsFile := write("claims.json", mustJSON(t, claimsOf(tc.sample, tc.edit)))
			r := runBin(t, nil, "policy", "explain", "--policy", "deploy", "--claims", claimsFile, dir)
			verdict := lastLine(r.stdout)
			want := "denied by " + tc.rule + ": "
			if tc.rule == "match" {
				want = "allowed: "
			}
			if !strings.HasPrefix(verdict, want) || (r.code == 0) != (tc.rule == "match") {
				t.Errorf("explain: exit %d, verdict %q, want %q…", r.code, verdict, want)
			}

			// 3. The broker: the answer's status and the audit record's rule.
			tok := issuers.Sign(t, gh, tc.sample, func(c map[string]any) {
				for k, v := range tc.edit {
					c[k] = v
				}
			})
			resp, err := http.Post(srv.URL+"/v1/exchange", "application/json",
				strings.NewReader(`{"policy":"deploy","token":"`+tok+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if wantStatus := map[bool]int{true: 200, false: 403}[tc.rule == "match"]; resp.StatusCode != wantStatus {
				t.Errorf("exchange answered %d, want %d", resp.StatusCode, wantStatus)
			}
			var rec struct{ Rule string }
			if err := json.Unmarshal([]byte(lastLine(readFile(t, auditPath))), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Rule != tc.rule {
				t.Errorf("the broker decided by rule %q, want %q", rec.Rule, tc.rule)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
