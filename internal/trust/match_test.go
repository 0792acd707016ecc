package trust

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// matchPolicy is a policy pinned by repository_id whose one further match
// key is under test.
func matchPolicy(key string) string {
	return fmt.Sprintf(`issuer: github
match:
  repository_id: "1"
%s
grant:
  token: {audience: https://svc.example}
`, indent(key, "  "))
}

func TestMatching(t *testing.T) {
	tests := []struct {
		name   string
		match  string // one match key, as YAML
		claims map[string]any
		want   bool
	}{
		{"an exact string matches the same claim", `ref: refs/heads/main`, map[string]any{"ref": "refs/heads/main"}, true},
		{"an exact string refuses a longer claim", `ref: refs/heads/main`, map[string]any{"ref": "refs/heads/main2"}, false},
		{"an exact string refuses a claim that differs in case", `ref: refs/heads/main`, map[string]any{"ref": "refs/heads/Main"}, false},
		{"an exact empty string matches an empty claim", `base_ref: ""`, map[string]any{"base_ref": ""}, true},

		{"a * glob matches within one segment", `repository: "acme/*"`, map[string]any{"repository": "acme/app"}, true},
		{"a * glob does not cross a /", `repository: "acme/*"`, map[string]any{"repository": "acme/app/x"}, false},
		{"a * glob does not match another owner", `repository: "acme/*"`, map[string]any{"repository": "acme-evil/app"}, false},
		{"a ** glob crosses segments", `job_workflow_ref: "acme/**"`, map[string]any{"job_workflow_ref": "acme/app/.github/workflows/d.yml@refs/heads/main"}, true},
		{"a * glob in the same place does not", `job_workflow_ref: "acme/*"`, map[string]any{"job_workflow_ref": "acme/app/.github/workflows/d.yml@refs/heads/main"}, false},
		{"a ? matches one character", `ref: "refs/heads/v?"`, map[string]any{"ref": "refs/heads/v1"}, true},
		{"a ? does not match two characters", `ref: "refs/heads/v?"`, map[string]any{"ref": "refs/heads/v10"}, false},
		{"a ? does not match a /", `ref: "refs/heads/v?x"`, map[string]any{"ref": "refs/heads/v/x"}, false},
		{"a . in a glob is literal", `ref: "refs/tags/v1.*"`, map[string]any{"ref": "refs/tags/v1x2"}, false},
		{"[bot] in a glob is literal and matches a bot account", `actor: "*[bot]"`, map[string]any{"actor": "dependabot[bot]"}, true},
		{"[bot] in a glob is not a character class", `actor: "*[bot]"`, map[string]any{"actor": "dependabotb"}, false},
		{"[bot] in a glob does not match a person", `actor: "*[bot]"`, map[string]any{"actor": "octo-dev"}, false},
		{"[ ] in an exact string are literal", `actor: "renovate[bot]"`, map[string]any{"actor": "renovate[bot]"}, true},

		{"a list matches any of its values", `event_name: [push, workflow_dispatch]`, map[string]any{"event_name": "workflow_dispatch"}, true},
		{"a list refuses a value it does not hold", `event_name: [push, workflow_dispatch]`, map[string]any{"event_name": "pull_request"}, false},
		{"a list may mix exact values and regexes", `ref: [refs/heads/main, {regex: 'refs/heads/release/[0-9]+'}]`, map[string]any{"ref": "refs/heads/release/12"}, true},

		{"a YAML boolean matches GitLab's \"true\" string", `ref_protected: true`, map[string]any{"ref_protected": "true"}, true},
		{"a YAML boolean matches a boolean claim", `ref_protected: true`, map[string]any{"ref_protected": true}, true},
		{"a YAML boolean refuses the \"false\" string", `ref_protected: true`, map[string]any{"ref_protected": "false"}, false},
		{"a YAML boolean refuses a boolean false claim", `ref_protected: true`, map[string]any{"ref_protected": false}, false},
		{"a YAML boolean refuses \"True\"", `ref_protected: true`, map[string]any{"ref_protected": "True"}, false},
		{"a YAML false matches the \"false\" string", `ref_protected: false`, map[string]any{"ref_protected": "false"}, true},
		{"a quoted \"true\" matches a boolean claim", `ref_protected: "true"`, map[string]any{"ref_protected": true}, true},

		{"a YAML number matches GitHub's string id", `repository_owner_id: 45678901`, map[string]any{"repository_owner_id": "45678901"}, true},
		{"a YAML number matches GitLab's number id", `project_id: 4242`, map[string]any{"project_id": json.Number("4242")}, true},
		{"a YAML number refuses a different id", `project_id: 4242`, map[string]any{"project_id": "42420"}, false},
		{"a quoted id matches a number claim", `project_id: "4242"`, map[string]any{"project_id": json.Number("4242")}, true},

		{"a regex is anchored at the start and end", `ref: {regex: main}`, map[string]any{"ref": "maintenance"}, false},
		{"a regex matches the whole claim", `ref: {regex: main}`, map[string]any{"ref": "main"}, true},
		{"an alternation is anchored as a whole", `ref: {regex: "main|dev"}`, map[string]any{"ref": "xmain"}, false},
		{"an alternation's second branch is anchored too", `ref: {regex: "main|dev"}`, map[string]any{"ref": "devx"}, false},
		{"a regex matches with classes and repeats", `ref: {regex: 'refs/tags/v[0-9]+\.[0-9]+'}`, map[string]any{"ref": "refs/tags/v1.20"}, true},

		{"a missing claim does not match an exact value", `environment: production`, map[string]any{}, false},
		{"a missing claim does not match a * glob", `environment: "*"`, map[string]any{}, false},
		{"a missing claim does not match a ** glob", `environment: "**"`, map[string]any{}, false},
		{"a missing claim does not match a match-all regex", `environment: {regex: ".*"}`, map[string]any{}, false},
		{"a null claim counts as missing", `environment: "**"`, map[string]any{"environment": nil}, false},
		{"a list claim never matches", `groups: admin`, map[string]any{"groups": []any{"admin"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustLoad(t, map[string]string{"p.yaml": matchPolicy(tt.match)})
			c := map[string]any{"repository_id": "1"}
			for k, v := range tt.claims {
				c[k] = v
			}
			d := set.Authorize("github", "p", claimSet(t, c))
			if d.Allowed != tt.want {
				t.Errorf("allowed = %v, want %v (rule %s: %s)", d.Allowed, tt.want, d.Rule, d.Reason)
			}
		})
	}
}

const denyPolicy = `issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
  environment: production
  event_name: [push, workflow_dispatch]
deny:
  - event_name: pull_request_target
  - actor: "*[bot]"
  - event_name: push
    actor: octo-intern
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/deploy-prod
`

func TestAuthorizeDecisions(t *testing.T) {
	set := mustLoad(t, map[string]string{"trustpolicies/deploy-prod.yaml": denyPolicy})
	tests := []struct {
		name       string
		issuer     string
		policy     string
		sample     string
		edits      map[string]any
		wantAllow  bool
		wantRule   string
		wantReason string
	}{
		{"a deploy from main through production is allowed", "github", "deploy-prod", "github-environment-production", nil,
			true, "match", `claims satisfy policy "deploy-prod"`},
		{"another branch is refused, naming the claim and the value wanted", "github", "deploy-prod", "github-environment-production",
			map[string]any{"ref": "refs/heads/dev"},
			false, "match.ref", `claim "ref" = "refs/heads/dev" does not match policy "deploy-prod" (want "refs/heads/main")`},
		{"a missing environment is refused as missing", "github", "deploy-prod", "github-push-main", nil,
			false, "match.environment", `claim "environment" is missing (policy "deploy-prod" requires "production")`},
		{"a list names every value wanted", "github", "deploy-prod", "github-environment-production",
			map[string]any{"event_name": "schedule"},
			false, "match.event_name", `claim "event_name" = "schedule" does not match policy "deploy-prod" (want one of "push", "workflow_dispatch")`},
		{"pull_request_target is refused by the deny rule, which wins over match", "github", "deploy-prod", "github-pull-request-target", nil,
			false, "deny[0].event_name", `deny rule 0 of policy "deploy-prod" matched: event_name = "pull_request_target"`},
		{"a bot actor is refused by the glob deny rule", "github", "deploy-prod", "github-environment-production",
			map[string]any{"actor": "dependabot[bot]"},
			false, "deny[1].actor", `deny rule 1 of policy "deploy-prod" matched: actor = "dependabot[bot]"`},
		{"a deny block of two keys refuses when both match", "github", "deploy-prod", "github-environment-production",
			map[string]any{"event_name": "push", "actor": "octo-intern"},
			false, "deny[2]", `deny rule 2 of policy "deploy-prod" matched: event_name = "push", actor = "octo-intern"`},
		{"a deny block of two keys lets through a token that matches one", "github", "deploy-prod", "github-environment-production",
			map[string]any{"event_name": "workflow_dispatch", "actor": "octo-intern"},
			true, "match", `claims satisfy policy "deploy-prod"`},
		{"an unknown policy is refused", "github", "deploy-staging", "github-environment-production", nil,
			false, "unknown_policy", `unknown policy "deploy-staging"`},
		{"a token from another issuer is refused", "gitlab", "deploy-prod", "github-environment-production", nil,
			false, "issuer", `policy "deploy-prod" does not accept tokens from issuer "gitlab"`},
		{"a hostile claim value is quoted and cut short in the reason", "github", "deploy-prod", "github-environment-production",
			map[string]any{"ref": "refs/heads/\"\n" + strings.Repeat("x", 200)},
			false, "match.ref", `claim "ref" = "refs/heads/\"\n` + strings.Repeat("x", 67) + `…" does not match policy "deploy-prod" (want "refs/heads/main")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.Authorize(tt.issuer, tt.policy, sampleClaims(t, tt.sample, tt.edits))
			if d.Allowed != tt.wantAllow || d.Rule != tt.wantRule || d.Reason != tt.wantReason {
				t.Errorf("got allowed=%v rule=%q reason=%q\nwant allowed=%v rule=%q reason=%q",
					d.Allowed, d.Rule, d.Reason, tt.wantAllow, tt.wantRule, tt.wantReason)
			}
			if tt.wantRule == "unknown_policy" {
				if d.Policy != nil {
					t.Errorf("Policy = %v for an unknown policy, want nil", d.Policy.Name)
				}
			} else if d.Policy == nil || d.Policy.Name != "deploy-prod" {
				t.Errorf("Policy = %v, want deploy-prod", d.Policy)
			}
		})
	}
}

func TestAuthorizeOnNilSetAndNilClaimsDenies(t *testing.T) {
	var empty *Set
	if d := empty.Authorize("github", "deploy-prod", nil); d.Allowed || d.Rule != RuleUnknownPolicy {
		t.Errorf("nil set: %+v", d)
	}
	set := mustLoad(t, map[string]string{"deploy-prod.yaml": denyPolicy})
	if d := set.Authorize("github", "deploy-prod", nil); d.Allowed || d.Rule != "match.repository" {
		t.Errorf("nil claims: allowed=%v rule=%s", d.Allowed, d.Rule)
	}
}

func TestIdentityPinning(t *testing.T) {
	tests := []struct {
		name  string
		match string
		pins  bool
	}{
		{"an exact repository pins", `repository: acme/app`, true},
		{"an exact repository id pins", `repository_id: "892345671"`, true},
		{"a numeric project id pins", `project_id: 4242`, true},
		{"an exact owner pins", `repository_owner: acme`, true},
		{"a glob with a literal owner pins", `repository: "acme/*"`, true},
		{"a ** glob with a literal owner pins", `project_path: "group/**"`, true},
		{"a sub glob with a literal owner pins", `sub: "repo:acme/app:*"`, true},
		{"a list of exact repositories pins", `repository: [acme/app, acme/web]`, true},
		{"a regex with a literal owner pins", `repository: {regex: "acme/(app|web)"}`, true},
		{"a regex whose every branch has a literal owner pins", `repository: {regex: "acme/app|other/.*"}`, true},
		{"*/* pins nothing", `repository: "*/*"`, false},
		{"** pins nothing", `repository: "**"`, false},
		{"a wildcard in the owner pins nothing", `repository: "acme*/app"`, false},
		{"a ? in the owner pins nothing", `repository: "a?me/app"`, false},
		{"an owner glob pins nothing", `repository_owner: "acme*"`, false},
		{"a glob on an id pins nothing", `repository_id: "89*"`, false},
		{"a sub glob without an owner pins nothing", `sub: "repo:*"`, false},
		{"a regex without a literal owner pins nothing", `repository: {regex: ".*/app"}`, false},
		{"a case-insensitive regex pins nothing", `repository: {regex: "(?i)acme/app"}`, false},
		{"a regex with one open branch pins nothing", `repository: {regex: "acme/app|.*"}`, false},
		{"a regex on an id pins nothing", `repository_id: {regex: "[0-9]+"}`, false},
		{"a list with one open pattern pins nothing", `repository: [acme/app, "*/*"]`, false},
		{"a ref alone pins nothing", `ref: refs/heads/main`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "issuer: github\nmatch:\n" + indent(tt.match, "  ") + "\ngrant:\n  token: {audience: aud}\n"
			_, err := LoadFiles(map[string][]byte{"p.yaml": []byte(src)}, testIssuers)
			if tt.pins && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.pins {
				if err == nil {
					t.Fatal("loaded; want it refused for pinning no identity")
				}
				if !strings.Contains(err.Error(), "p.yaml:2:1: match pins no repository or project identity") {
					t.Errorf("error = %v", err)
				}
			}
		})
	}
}
