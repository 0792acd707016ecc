package trust

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const examples = "../../trustpolicies"

func TestExamplePoliciesPassTheirOwnTests(t *testing.T) {
	set, err := LoadDir(examples, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"deploy-prod", "ci-artifacts", "gitlab-deploy", "gcp-deploy"} {
		if _, ok := set.Lookup(name); !ok {
			t.Errorf("example policy %s is missing", name)
		}
	}
	results, err := RunTests(examples, set)
	if err != nil {
		t.Fatal(err)
	}
	perPolicy := map[string]int{}
	for _, r := range results {
		perPolicy[r.Policy]++
		if !r.Passed {
			t.Errorf("%s:%d: %s: %s", r.File, r.Line, r.Case, r.Message)
		}
	}
	for _, p := range set.Policies() {
		if perPolicy[p.Name] < 3 {
			t.Errorf("policy %s has %d test cases; every example should show what it allows and refuses", p.Name, perPolicy[p.Name])
		}
	}
}

// The examples' tests use inline claims; these check the examples against
// the sample tokens shaped like the platforms' real ones too.
func TestExamplePoliciesAgainstSampleTokens(t *testing.T) {
	set, err := LoadDir(examples, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		policy, issuer, sample string
		wantRule               string
	}{
		{"deploy-prod", "github", "github-environment-production", "match"},
		{"deploy-prod", "github", "github-reusable-workflow", "match"},
		{"deploy-prod", "github", "github-push-main", "match.environment"},
		{"deploy-prod", "github", "github-pull-request", "match.ref"},
		{"deploy-prod", "github", "github-pull-request-target", "deny[0].event_name"},
		{"ci-artifacts", "github", "github-push-main", "match"},
		{"ci-artifacts", "github", "github-immutable-sub", "match"},
		{"ci-artifacts", "github", "github-pull-request-target", "deny[0].event_name"},
		{"gcp-deploy", "github", "github-reusable-workflow", "match"},
		{"gcp-deploy", "github", "github-environment-production", "match.job_workflow_ref"},
		{"gitlab-deploy", "gitlab", "gitlab-protected-deploy", "match"},
		{"gitlab-deploy", "gitlab", "gitlab-unprotected-branch", "match.ref"},
		{"gitlab-deploy", "gitlab", "gitlab-fork-merge-request", "deny[0].pipeline_source"},
		{"gitlab-deploy", "github", "gitlab-protected-deploy", "issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.policy+" with "+tt.sample, func(t *testing.T) {
			d := set.Decide(tt.issuer, tt.policy, sampleClaims(t, tt.sample, nil))
			if d.Rule != tt.wantRule || d.Allowed != (tt.wantRule == "match") {
				t.Errorf("allowed=%v rule=%s (%s), want rule %s", d.Allowed, d.Rule, d.Reason, tt.wantRule)
			}
		})
	}
}

func TestRunTestsReportsFailingCases(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"deploy.yaml": denyPolicy,
		"deploy.test.yaml": `claims:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
  environment: production
  event_name: push
cases:
  - name: main is allowed
    expect: allow
  - name: dev is wrongly expected to be allowed
    claims: {ref: refs/heads/dev}
    expect: allow
  - name: the wrong rule is expected
    claims: {ref: refs/heads/dev}
    expect: deny
    rule: match.environment
  - name: a rule prefix is accepted
    claims: {event_name: pull_request_target}
    expect: deny
    rule: deny[0]
  - name: a rule prefix must end at a dot
    claims: {actor: "x[bot]"}
    expect: deny
    rule: deny[1].act
  - name: removing a claim with null
    claims: {environment: null}
    expect: deny
    rule: match.environment
`,
	})
	set, err := LoadDir(dir, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunTests(dir, set)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Line    int
		Passed  bool
		Message string
	}
	var got []row
	for _, r := range results {
		got = append(got, row{r.Line, r.Passed, r.Message})
		if r.Policy != "deploy" || r.File != filepath.Join(dir, "deploy.test.yaml") {
			t.Errorf("result names policy %q file %q", r.Policy, r.File)
		}
	}
	want := []row{
		{8, true, ""},
		{10, false, `expected allow, got deny by rule match.ref: claim "ref" = "refs/heads/dev" does not match policy "deploy" (want "refs/heads/main")`},
		{13, false, `expected rule match.environment, got rule match.ref: claim "ref" = "refs/heads/dev" does not match policy "deploy" (want "refs/heads/main")`},
		{17, true, ""},
		{21, false, `expected rule deny[1].act, got rule deny[1].actor: deny rule 1 of policy "deploy" matched: actor = "x[bot]"`},
		{25, true, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results:\n%+v\nwant\n%+v", got, want)
	}
}

func TestRunTestsReportsBrokenTestFilesWithPositions(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"a YAML error", "cases:\n  - name: [x\n", []string{"deploy.test.yaml:2:1: YAML: did not find expected ',' or ']'"}},
		{"an unknown key", "cases:\n  - name: x\n    expect: allow\n    expected: deny\n",
			[]string{`deploy.test.yaml:4:5: unknown key "expected" in cases[0] (allowed: name, issuer, claims, expect, rule)`}},
		{"an expectation that is neither allow nor deny", "cases:\n  - name: x\n    expect: yes\n",
			[]string{`deploy.test.yaml:3:13: cases[0].expect "yes" must be allow or deny`}},
		{"a case without a name", "cases:\n  - expect: allow\n",
			[]string{`deploy.test.yaml:2:5: cases[0].name is required: say what the case shows`}},
		{"an unknown policy", "policy: nope\ncases:\n  - name: x\n    expect: allow\n",
			[]string{`deploy.test.yaml:1:9: policy "nope" is not loaded (a policy with problems is not loaded either)`}},
		{"no cases", "claims: {ref: main}\n", []string{`deploy.test.yaml:1:1: cases is required: a list of {name, claims, expect}`}},
		{"a claim of the wrong type", "cases:\n  - name: x\n    claims: {repository: 5}\n    expect: deny\n",
			[]string{`deploy.test.yaml:2:5: cases[0].claims: claim "repository" must be a string, got number`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"deploy.yaml": denyPolicy, "deploy.test.yaml": tt.body})
			set, err := LoadDir(dir, testIssuers)
			if err != nil {
				t.Fatal(err)
			}
			results, err := RunTests(dir, set)
			if len(results) != 0 {
				t.Errorf("a broken file ran %d cases", len(results))
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			var got []string
			for _, p := range le.Problems {
				got = append(got, strings.TrimPrefix(p.String(), dir+string(filepath.Separator)))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestATestFileFindsItsPolicyByFileEvenWhenNamedOtherwise(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"prod.yaml":      "name: deploy-production\n" + denyPolicy,
		"prod.test.yaml": "cases:\n  - name: another repository is refused\n    claims: {repository: evil/app}\n    expect: deny\n    rule: match.repository\n",
	})
	set, err := LoadDir(dir, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunTests(dir, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || !results[0].Passed || results[0].Policy != "deploy-production" {
		t.Errorf("results = %+v", results)
	}
}

func TestExplainShowsEveryCondition(t *testing.T) {
	set, err := LoadDir(examples, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Lookup("deploy-prod")
	checks := p.Explain("github", sampleClaims(t, "github-pull-request-target", nil))
	type row struct {
		Rule   string
		Claim  string
		Passed bool
	}
	var got []row
	for _, c := range checks {
		got = append(got, row{c.Rule, c.Claim, c.Passed})
	}
	want := []row{
		{"issuer", "", true},
		{"match.repository", "repository", true},
		{"match.repository_id", "repository_id", true},
		{"match.ref", "ref", true},
		{"match.environment", "environment", false},
		{"match.event_name", "event_name", false},
		{"deny[0].event_name", "event_name", false},
		{"deny[1].actor", "actor", true},
		{"grant", "", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("checks:\n%+v\nwant\n%+v", got, want)
	}
	details := map[string]string{}
	for _, c := range checks {
		details[c.Rule] = c.Detail
	}
	for rule, want := range map[string]string{
		"match.ref":          `ref = "refs/heads/main" matches "refs/heads/main"`,
		"match.environment":  `claim "environment" is missing (policy "deploy-prod" requires "production")`,
		"deny[0].event_name": `deny rule 0 of policy "deploy-prod" matched: event_name = "pull_request_target"`,
		"deny[1].actor":      `deny rule 1 (actor matches glob "*[bot]") does not match: actor = "octo-dev"`,
	} {
		if details[rule] != want {
			t.Errorf("%s detail = %q, want %q", rule, details[rule], want)
		}
	}
	if !strings.Contains(details["grant"], "arn:aws:s3:::artifacts/acme/app/*") {
		t.Errorf("grant detail does not show the rendered session policy: %s", details["grant"])
	}

	wrong := p.Explain("gitlab", sampleClaims(t, "github-environment-production", nil))
	if wrong[0].Passed || wrong[0].Detail != `policy "deploy-prod" does not accept tokens from issuer "gitlab" (it accepts "github")` {
		t.Errorf("issuer check = %+v", wrong[0])
	}
}
