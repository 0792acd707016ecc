package trust

import (
	"encoding/json"
	"github.com/ferry-broker/ferry/internal/yamlpos"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBlastRadiusOfTheExamples(t *testing.T) {
	set, err := LoadDir(examples, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	exps := BlastRadius(set)
	if len(exps) != set.Len() {
		t.Fatalf("%d exposures for %d policies", len(exps), set.Len())
	}
	byName := map[string]Exposure{}
	for _, e := range exps {
		byName[e.Policy] = e
	}
	prod := byName["deploy-prod"]
	want := Exposure{
		Policy: "deploy-prod", File: examples + "/deploy-prod.yaml", Issuer: "github",
		Who: []string{
			`repository = "acme/app"`, `repository_id = "892345671"`, `ref = "refs/heads/main"`,
			`environment = "production"`, `event_name is one of "push", "workflow_dispatch"`,
		},
		Deny:        []string{`event_name = "pull_request_target"`, `actor matches glob "*[bot]"`},
		Grant:       "aws",
		Credential:  "arn:aws:iam::123456789012:role/deploy-prod",
		MaxDuration: 15 * time.Minute,
	}
	prod.Narrowing = nil
	if !reflect.DeepEqual(prod, want) {
		t.Errorf("deploy-prod exposure:\n%+v\nwant\n%+v", prod, want)
	}
	if len(byName["gitlab-deploy"].Warnings) != 0 || len(byName["gcp-deploy"].Warnings) != 0 {
		t.Errorf("the tight examples have warnings: %v %v", byName["gitlab-deploy"].Warnings, byName["gcp-deploy"].Warnings)
	}
	ci := byName["ci-artifacts"]
	if ci.Credential != "https://artifacts.internal.example" || ci.Grant != "token" || len(ci.Warnings) == 0 {
		t.Errorf("ci-artifacts exposure = %+v", ci)
	}
}

func TestBlastRadiusWarnsOfRiskyShapes(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		want   []string // substrings, one per expected warning, in order
	}{
		{"a loose GitHub policy", `issuer: github
match:
  repository: "acme/*"
grant:
  aws: {role_arn: "arn:aws:iam::123456789012:role/x", duration: 4h}
`, []string{
			`repository matches glob "acme/*": every repository or project this pattern matches`,
			"no ref pin",
			"no environment pin",
			"pull_request_target events are not refused",
			"pull_request events can reach it",
			"the credential lives up to 4h",
		}},
		{"a GitHub policy pinned by name only that lets pull_request in by its ref", `issuer: github
match:
  repository: acme/app
  ref: "refs/**"
  environment: production
deny: [{event_name: pull_request_target}]
grant:
  token: {audience: x}
`, []string{
			"repository is pinned by name only",
			`ref matches glob "refs/**": every branch or tag it matches can reach it`,
			"pull_request events can reach it",
		}},
		{"an event list that allows pull_request_target", `issuer: github
match:
  repository: acme/app
  repository_id: "1"
  ref: refs/heads/main
  environment: production
  event_name: [push, pull_request_target]
grant:
  token: {audience: x}
`, []string{"pull_request_target events are not refused"}},
		{"a GitLab policy without protection or merge request pins", `issuer: gitlab
match:
  project_path: group/app
  ref: main
  environment: production
grant:
  token: {audience: x}
`, []string{
			"project_path is pinned by path only",
			"merge request pipelines (pipeline_source merge_request_event) are not refused",
			"no ref_protected: true pin",
		}},
		{"a GitLab policy that pins ref_protected to false", `issuer: gitlab
match:
  project_id: 4242
  ref: main
  ref_protected: false
  environment: production
  pipeline_source: push
grant:
  token: {audience: x}
`, []string{"no ref_protected: true pin"}},
		{"a tight GitLab policy", `issuer: gitlab
match:
  project_id: 4242
  ref: main
  ref_protected: true
  environment: production
deny: [{pipeline_source: merge_request_event}]
grant:
  token: {audience: x}
`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustLoad(t, map[string]string{"p.yaml": tt.policy})
			got := BlastRadius(set)[0].Warnings
			if len(got) != len(tt.want) {
				t.Fatalf("warnings:\n%s\nwant %d", strings.Join(got, "\n"), len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

func TestExposureJSON(t *testing.T) {
	e := Exposure{Policy: "p", Issuer: "github", Grant: "aws", MaxDuration: 90 * time.Minute}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"policy":"p","file":"","issuer":"github","who":[],"deny":[],"grant":"aws","credential":"","narrowing":[],"max_duration":"1h30m","max_duration_seconds":5400,"warnings":[]}`
	if string(data) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", data, want)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		15 * time.Minute: "15m", time.Hour: "1h", 12 * time.Hour: "12h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
	} {
		if got := yamlpos.FormatDuration(d); got != want {
			t.Errorf("yamlpos.FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
