package trust

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// good is a valid policy the error cases below break one line of.
const good = `issuer: github
match:
  repository: acme/app
grant:
  token:
    audience: https://svc.example
`

func TestLoadErrorsNameFileLineAndColumn(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // every problem, in order
	}{
		{"a YAML syntax error is reported at its line",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: [acme/app\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:3:1: YAML: did not find expected ',' or ']'`}},
		{"a tab in indentation is a YAML error at its line",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n\trepository: acme/app\n"},
			[]string{`p.yaml:3:1: YAML: found character that cannot start any token`}},
		{"an empty file is an error",
			map[string]string{"p.yaml": "# nothing yet\n"},
			[]string{`p.yaml:1:1: file is empty`}},
		{"a file that is not a mapping is an error",
			map[string]string{"p.yaml": "- issuer: github\n"},
			[]string{`p.yaml:1:1: the policy must be a mapping of key: value`}},
		{"a second YAML document is an error",
			map[string]string{"p.yaml": good + "---\nissuer: gitlab\n"},
			[]string{`p.yaml:7:1: a file holds one YAML document; remove the second`}},
		{"an unknown top-level key names the key and the keys allowed",
			map[string]string{"p.yaml": good + "grants: {}\n"},
			[]string{`p.yaml:7:1: unknown key "grants" in the policy (allowed: name, description, issuer, match, deny, grant)`}},
		{"an unknown key inside a grant is reported where it is",
			map[string]string{"p.yaml": good + "    lifetime: 5m\n"},
			[]string{`p.yaml:7:5: unknown key "lifetime" in grant.token (allowed: audience, duration, claims, extra_claims)`}},
		{"a key written twice is an error at the second",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\n  repository: acme/web\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:4:3: match: key "repository" appears twice (first at line 3)`}},
		{"two grants are an error at the second",
			map[string]string{"p.yaml": good + "  aws:\n    role_arn: arn:aws:iam::123456789012:role/x\n"},
			[]string{`p.yaml:7:3: grant holds both token and aws: a policy grants exactly one credential`}},
		{"an empty grant is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant: {}\n"},
			[]string{`p.yaml:4:8: grant needs one of aws, gcp, token or github`}},
		{"a missing grant is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\n"},
			[]string{`p.yaml:1:1: grant is required: one of aws, gcp, token or github`}},
		{"a missing issuer is an error",
			map[string]string{"p.yaml": strings.Replace(good, "issuer: github\n", "", 1)},
			[]string{`p.yaml:1:1: issuer is required: name the configured issuer whose tokens this policy accepts, e.g. issuer: github`}},
		{"an issuer that is not configured is an error",
			map[string]string{"p.yaml": strings.Replace(good, "issuer: github", "issuer: bitbucket", 1)},
			[]string{`p.yaml:1:9: issuer "bitbucket" is not configured (configured: github, gitlab)`}},
		{"a duration that is not a duration is an error",
			map[string]string{"p.yaml": good + "    duration: soon\n"},
			[]string{`p.yaml:7:15: grant.token.duration "soon" is not a duration such as 15m or 1h`}},
		{"a duration out of range names the range",
			map[string]string{"p.yaml": good + "    duration: 2h\n"},
			[]string{`p.yaml:7:15: grant.token.duration 2h is out of range: allowed 1m..1h`}},
		{"an AWS duration under STS's minimum names the range",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::123456789012:role/x\n    duration: 5m\n"},
			[]string{`p.yaml:7:15: grant.aws.duration 5m is out of range: allowed 15m..12h`}},
		{"a policy that pins no identity is refused at its match key",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  ref: refs/heads/main\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:2:1: match pins no repository or project identity: every repository on the platform could reach this policy. Add repository, repository_id, repository_owner, repository_owner_id, project_path, project_id, namespace_path, namespace_id or sub with an exact value, or a pattern whose owner part is literal (none of these keys is present)`}},
		{"a wildcard repository is refused as pinning nothing",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: \"*/*\"\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:2:1: match pins no repository or project identity: every repository on the platform could reach this policy. Add repository, repository_id, repository_owner, repository_owner_id, project_path, project_id, namespace_path, namespace_id or sub with an exact value, or a pattern whose owner part is literal (repository matches glob "*/*" pins nothing)`}},
		{"an invalid regex is reported at the expression",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\n  ref: {regex: \"refs/heads/(main\"}\ngrant:\n  token: {audience: x}\n"},
			[]string{"p.yaml:4:16: match.ref: invalid regex \"refs/heads/(main\": missing closing ): `refs/heads/(main`"}},
		{"an IAM ARN that is not a role is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::123456789012:user/deploy\n"},
			[]string{`p.yaml:6:15: grant.aws.role_arn "arn:aws:iam::123456789012:user/deploy" is not an IAM role ARN such as arn:aws:iam::123456789012:role/NAME`}},
		{"an ARN with a short account id is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::1234:role/deploy\n"},
			[]string{`p.yaml:6:15: grant.aws.role_arn "arn:aws:iam::1234:role/deploy" is not an IAM role ARN such as arn:aws:iam::123456789012:role/NAME`}},
		{"a template in the role ARN is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: \"arn:aws:iam::123456789012:role/{{repository}}\"\n"},
			[]string{`p.yaml:6:15: grant.aws.role_arn cannot use {{claim}} templates`}},
		{"a GCP service account that is not an email is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  gcp:\n    service_account: deploy@acme-prod.example.com\n"},
			[]string{`p.yaml:6:22: grant.gcp.service_account "deploy@acme-prod.example.com" is not a service account email such as deploy@PROJECT.iam.gserviceaccount.com: service account "deploy@acme-prod.example.com" must end in .gserviceaccount.com (e.g. NAME@PROJECT.iam.gserviceaccount.com)`}},
		{"a GCP delegate that is not an email is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  gcp:\n    service_account: deploy@acme-prod.iam.gserviceaccount.com\n    delegates: [ops]\n"},
			[]string{`p.yaml:7:17: grant.gcp.delegates: "ops" is not a service account email: service account "ops" must have exactly one @`}},
		{"an unclosed template is an error at its value",
			map[string]string{"p.yaml": good + "    extra_claims:\n      team: \"{{repository_owner\"\n"},
			[]string{`p.yaml:8:13: grant.token.extra_claims.team: template "{{repository_owner" is not closed with }}`}},
		{"a template that names no claim is an error",
			map[string]string{"p.yaml": good + "    extra_claims:\n      team: \"{{ repository-owner }}\"\n"},
			[]string{`p.yaml:8:13: grant.token.extra_claims.team: template "{{ repository-owner }}" must name one claim: letters, digits and _ between {{ and }}`}},
		{"a template in the audience is an error",
			map[string]string{"p.yaml": strings.Replace(good, "https://svc.example", `"https://{{repository}}.example"`, 1)},
			[]string{`p.yaml:6:15: grant.token.audience cannot use {{claim}} templates`}},
		{"a template outside a CEL string literal is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  gcp:\n    service_account: deploy@acme-prod.iam.gserviceaccount.com\n    access_boundary:\n      - available_resource: //storage.googleapis.com/projects/_/buckets/b\n        available_permissions: [inRole:roles/storage.objectViewer]\n        condition:\n          expression: resource.name == {{repository}}\n"},
			[]string{`p.yaml:11:23: grant.gcp.access_boundary[0].condition.expression: a {{claim}} template must sit inside a quoted string literal`}},
		{"a template in a session policy key is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::123456789012:role/x\n    session_policy:\n      Statement:\n        - \"{{sid}}\": x\n"},
			[]string{`p.yaml:9:11: grant.aws.session_policy: templates are allowed in string values, not in keys`}},
		{"a session policy string that is not JSON is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::123456789012:role/x\n    session_policy: '{\"Statement\": [}'\n"},
			[]string{`p.yaml:7:21: grant.aws.session_policy is not valid JSON: invalid character '}' looking for beginning of value`}},
		{"a session policy over STS's limit is an error",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::123456789012:role/x\n    session_policy:\n      Statement: [{Sid: " + strings.Repeat("x", 2100) + "}]\n"},
			[]string{`p.yaml:8:7: grant.aws.session_policy is 2126 characters packed, over STS's limit of 2048`}},
		{"a YAML alias is refused",
			map[string]string{"p.yaml": "issuer: github\nmatch: &m\n  repository: acme/app\ndeny: [*m]\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:2:8: YAML anchors and aliases are not supported: write each value out`}},
		{"a float match value is refused",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\n  run_attempt: 1.0\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:4:16: match.run_attempt: 1.0 is a floating-point number, which cannot match claims reliably; quote it to match it as text`}},
		{"matching on the audience is refused",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\n  aud: ferry\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:4:3: match: claim "aud" cannot be matched: the audience is checked against the issuer configuration`}},
		{"an empty list in match is refused",
			map[string]string{"p.yaml": "issuer: github\nmatch:\n  repository: acme/app\n  ref: []\ngrant:\n  token: {audience: x}\n"},
			[]string{`p.yaml:4:8: match.ref: an empty list matches nothing`}},
		{"a name from a file name that is not valid is an error",
			map[string]string{"Deploy Prod.yaml": good},
			[]string{`Deploy Prod.yaml:1:1: name "Deploy Prod" (from the file name) must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit; rename the file or set name:`}},
		{"two policies of the same name are an error naming both files",
			map[string]string{"a.yaml": "name: deploy\n" + good, "b.yaml": "name: deploy\n" + good},
			[]string{`b.yaml:1:7: policy name "deploy" is already used by a.yaml`}},
		{"problems of several files are all reported, sorted",
			map[string]string{"b.yaml": good + "x: 1\n", "a.yaml": good + "y: 1\n"},
			[]string{
				`a.yaml:7:1: unknown key "y" in the policy (allowed: name, description, issuer, match, deny, grant)`,
				`b.yaml:7:1: unknown key "x" in the policy (allowed: name, description, issuer, match, deny, grant)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadProblems(t, tt.files)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoadErrorListsOneProblemALine(t *testing.T) {
	err := &LoadError{Problems: []Problem{
		{File: "a.yaml", Line: 3, Col: 5, Message: "first"},
		{File: "dir", Message: "unreadable"},
	}}
	if got, want := err.Error(), "a.yaml:3:5: first\ndir: unreadable"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLoadDirSkipsTestFilesAndOtherFiles(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"deploy.yaml":      good,
		"other.yml":        strings.Replace(good, "acme/app", "acme/web", 1),
		"deploy.test.yaml": "not: [a policy",
		"deploy.test.yml":  "not: [a policy",
		"README.md":        "# policies",
		".hidden.yaml":     "broken: [",
	})
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	set, err := LoadDir(dir, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range set.Policies() {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"deploy", "other"}) {
		t.Errorf("policies = %v", names)
	}
	if p, _ := set.Lookup("deploy"); p.File() != filepath.Join(dir, "deploy.yaml") {
		t.Errorf("File = %q", p.File())
	}
}

func TestLoadDirOfAMissingDirectoryIsALoadError(t *testing.T) {
	_, err := LoadDir(filepath.Join(t.TempDir(), "nope"), testIssuers)
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 1 || !strings.Contains(le.Problems[0].Message, "no such file or directory") {
		t.Fatalf("err = %v", err)
	}
}

func TestNilIssuersSkipsTheIssuerCheck(t *testing.T) {
	src := strings.Replace(good, "issuer: github", "issuer: bitbucket", 1)
	set, err := LoadFiles(map[string][]byte{"p.yaml": []byte(src)}, LoadOptions{Kinds: testIssuers.Kinds, Platforms: testIssuers.Platforms})
	if err != nil || set.Len() != 1 {
		t.Fatalf("set %v, err %v", set, err)
	}
}

func TestSetListsPoliciesSortedAndOwnsItsSlice(t *testing.T) {
	set := mustLoad(t, map[string]string{
		"z.yaml": good, "a.yaml": good, "m.yaml": strings.Replace(good, "issuer: github", "name: b\nissuer: github", 1),
	})
	ps := set.Policies()
	if set.Len() != 3 || ps[0].Name != "a" || ps[1].Name != "b" || ps[2].Name != "z" {
		t.Fatalf("policies = %v", ps)
	}
	ps[0] = nil
	if again := set.Policies(); again[0] == nil {
		t.Error("changing the returned slice changed the set")
	}
}
