package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const policyExamples = "../../trustpolicies"

func policySample(name string) string {
	return filepath.Join("..", "..", "internal", "devissuer", "claims", name+".json")
}

type policyRun struct {
	code           int
	stdout, stderr string
}

func runPolicyCmd(args ...string) policyRun {
	var out, errOut bytes.Buffer
	code := runPolicy(context.Background(), args, &out, &errOut)
	return policyRun{code, out.String(), errOut.String()}
}

func TestPolicyCommands(t *testing.T) {
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "p.yaml"), []byte("issuer: github\nmatch:\n  ref: main\n  ref: dev\ngrant: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failing := t.TempDir()
	for name, body := range map[string]string{
		"p.yaml":      "issuer: github\nmatch: {repository: acme/app}\ngrant: {token: {audience: x}}\n",
		"p.test.yaml": "cases:\n  - name: another repository is wrongly expected to pass\n    claims: {repository: evil/app}\n    expect: allow\n",
	} {
		if err := os.WriteFile(filepath.Join(failing, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{"validate accepts the examples", []string{"validate", policyExamples}, 0, []string{"5 policies OK\n"}, nil},
		{"validate accepts issuers to check against", []string{"validate", policyExamples, "--issuers", "github,gitlab"}, 0, []string{"5 policies OK"}, nil},
		{"validate refuses a policy of an issuer not listed", []string{"validate", "--issuers", "github", policyExamples}, 1, nil,
			[]string{`gitlab-deploy.yaml:5:9: issuer "gitlab" is not configured (configured: github)`}},
		{"validate prints FILE:LINE:COL for each problem", []string{"validate", broken}, 1, nil,
			[]string{broken + `/p.yaml:4:3: match: key "ref" appears twice (first at line 3)`, broken + "/p.yaml:5:8: grant needs one of aws, gcp, token or github"}},
		{"validate of a missing directory fails", []string{"validate", filepath.Join(broken, "nope")}, 1, nil, []string{"no such file or directory"}},

		{"test runs every case of the examples", []string{"test", policyExamples}, 0,
			[]string{"PASS  deploy-prod: pull_request_target is refused although its ref is main\n", " passed, 0 failed\n"}, nil},
		{"test fails on a failing case and says why and where", []string{"test", failing}, 1,
			[]string{"FAIL  p: another repository is wrongly expected to pass\n      " + failing + `/p.test.yaml:2:5: expected allow, got deny by rule match.repository`, "0 passed, 1 failed"}, nil},
		{"test fails on a broken policy", []string{"test", broken}, 1, nil, []string{"p.yaml:4:3:"}},

		{"explain of an allowed token passes every check", []string{"explain", "--policy", "deploy-prod", "--claims", policySample("github-environment-production"), policyExamples}, 0,
			[]string{"  PASS  match.environment    environment = \"production\" matches \"production\"\n", `allowed: claims satisfy policy "deploy-prod"`}, nil},
		{"explain of a refused token shows each failing check and the deciding rule", []string{"explain", policyExamples, "--policy", "deploy-prod", "--claims", policySample("github-pull-request-target")}, 1,
			[]string{
				`FAIL  match.environment    claim "environment" is missing (policy "deploy-prod" requires "production")`,
				`FAIL  deny[0].event_name   deny rule 0 of policy "deploy-prod" matched: event_name = "pull_request_target"`,
				`denied by deny[0].event_name: deny rule 0 of policy "deploy-prod" matched: event_name = "pull_request_target"`,
			}, nil},
		{"explain takes the issuer a token came from", []string{"explain", "--policy", "gitlab-deploy", "--issuer", "github", "--claims", policySample("gitlab-protected-deploy"), policyExamples}, 1,
			[]string{`denied by issuer: policy "gitlab-deploy" does not accept tokens from issuer "github"`}, nil},
		{"explain of an unknown policy fails", []string{"explain", "--policy", "nope", "--claims", policySample("github-push-main"), policyExamples}, 1, nil,
			[]string{`unknown policy "nope"`}},
		{"explain of an unreadable claims file fails", []string{"explain", "--policy", "deploy-prod", "--claims", filepath.Join(broken, "none.json"), policyExamples}, 1, nil,
			[]string{"read claims"}},
		{"explain without --policy is a usage error", []string{"explain", "--claims", "x.json"}, 2, nil, []string{"--policy and --claims are required"}},

		{"blast-radius prints a table and each policy's reach", []string{"blast-radius", policyExamples}, 0,
			[]string{"POLICY", "deploy-prod      github  aws     arn:aws:iam::123456789012:role/deploy-prod", "github-checkout  github  github  GitHub App installation on acme", "warning: repository matches glob \"acme/*\""}, nil},
		{"blast-radius takes --format after DIR", []string{"blast-radius", policyExamples, "--format", "json"}, 0, []string{`"policy": "ci-artifacts"`}, nil},
		{"blast-radius refuses another format", []string{"blast-radius", "--format", "xml", policyExamples}, 2, nil, []string{`--format "xml" is not table, json or mermaid`}},

		{"no subcommand is a usage error", nil, 2, nil, []string{"Usage: ferry policy"}},
		{"an unknown subcommand is a usage error", []string{"lint"}, 2, nil, []string{`unknown subcommand "lint"`}},
		{"an unknown flag is a usage error", []string{"validate", "--strict"}, 2, nil, []string{"flag provided but not defined: -strict"}},
		{"two directories are a usage error", []string{"validate", policyExamples, broken}, 2, nil, []string{"one policy directory at most"}},
		{"help is not an error", []string{"help"}, 0, []string{"blast-radius [DIR] [--format table|json|mermaid]"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runPolicyCmd(tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

func TestPolicyBlastRadiusJSONIsMachineReadable(t *testing.T) {
	r := runPolicyCmd("blast-radius", "--format", "json", policyExamples)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got []struct {
		Policy      string   `json:"policy"`
		Issuer      string   `json:"issuer"`
		Grant       string   `json:"grant"`
		Credential  string   `json:"credential"`
		MaxDuration string   `json:"max_duration"`
		Who         []string `json:"who"`
		Warnings    []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(got) != 5 || got[1].Policy != "deploy-prod" || got[1].Credential != "arn:aws:iam::123456789012:role/deploy-prod" ||
		got[1].MaxDuration != "15m" || got[1].Who[0] != `repository = "acme/app"` || got[3].Grant != "github" || got[4].Issuer != "gitlab" {
		t.Errorf("exposures = %+v", got)
	}
}

func TestPolicyParseInterspersed(t *testing.T) {
	r := runPolicyCmd("validate", "--", "--not-a-flag")
	if r.code != 1 || !strings.Contains(r.stderr, "--not-a-flag") {
		t.Errorf("after --, an argument is a directory: exit %d, %s", r.code, r.stderr)
	}
}
