package trust

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// items writes n list entries, one a line, indented by indent.
func items(n int, indent, format string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s- "+format+"\n", indent, i)
	}
	return b.String()
}

func TestOversizedPoliciesAreLoadErrorsWithPositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"an any-of list over 1,000 items",
			"issuer: github\nmatch:\n  repository: acme/app\n  actor:\n" + items(1001, "    ", "user-%d") + "grant:\n  token: {audience: x}\n",
			[]string{`p.yaml:5:5: match.actor: a list of 1001 items is over the limit of 1000`}},
		{"a flow list over 1,000 items",
			"issuer: github\nmatch:\n  repository: acme/app\n  run_id: [" + strings.Repeat("x, ", 1500) + "x]\ngrant:\n  token: {audience: x}\n",
			[]string{`p.yaml:4:11: match.run_id: a list of 1501 items is over the limit of 1000`}},
		{"over 1,000 deny blocks",
			"issuer: github\nmatch:\n  repository: acme/app\ndeny:\n" + items(1001, "  ", "{actor: user-%d}") + "grant:\n  token: {audience: x}\n",
			[]string{`p.yaml:5:3: deny: a list of 1001 items is over the limit of 1000`}},
		{"a grant list over 1,000 items",
			good + "    claims:\n" + items(1001, "      ", "c%d"),
			[]string{`p.yaml:8:7: grant.token.claims: a list of 1001 items is over the limit of 1000`}},
		{"a list deep in a session policy",
			"issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  aws:\n    role_arn: arn:aws:iam::123456789012:role/x\n    session_policy:\n      Statement:\n        - Action:\n" + items(1001, "            ", "s3:Get%d"),
			[]string{`p.yaml:10:13: grant.aws.session_policy.Statement[0].Action: a list of 1001 items is over the limit of 1000`}},
		{"a mapping over 1,000 keys",
			"issuer: github\nmatch:\n  repository: acme/app\ngrant:\n  token:\n    audience: x\n    extra_claims:\n" + strings.ReplaceAll(items(1001, "      ", "k%d: v"), "- ", ""),
			[]string{`p.yaml:8:7: grant.token.extra_claims: a mapping of 1001 keys is over the limit of 1000`}},
		{"a file over 1 MiB",
			good + "description: " + strings.Repeat("x", MaxFileBytes) + "\n",
			[]string{fmt.Sprintf(`p.yaml: file is %d bytes, over the limit of 1048576 (1 MiB)`, len(good)+MaxFileBytes+14)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadProblems(t, map[string]string{"p.yaml": tt.src})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// At the limits a policy loads, and a long list of exact values matches.
func TestAPolicyAtTheLimitsLoads(t *testing.T) {
	src := "issuer: github\nmatch:\n  repository: acme/app\n  actor:\n" + items(MaxListItems, "    ", "user-%d") + "grant:\n  token: {audience: x}\n"
	set := mustLoad(t, map[string]string{"p.yaml": src})
	for actor, want := range map[string]bool{"user-0": true, "user-999": true, "user-1000": false, "octo-dev": false} {
		d := set.Authorize("github", "p", sampleClaims(t, "github-push-main", map[string]any{"actor": actor}))
		if d.Allowed != want {
			t.Errorf("actor %s: allowed = %v, want %v (%s)", actor, d.Allowed, want, d.Reason)
		}
	}
	// A refusal names a few of the values, not all thousand.
	d := set.Authorize("github", "p", sampleClaims(t, "github-push-main", map[string]any{"actor": "octo-dev"}))
	if !strings.Contains(d.Reason, `"user-0"`) || strings.Contains(d.Reason, `"user-999"`) || !strings.Contains(d.Reason, "990 more") {
		t.Errorf("reason %q should name a few values and count the rest", d.Reason)
	}
	if len(d.Reason) > 400 {
		t.Errorf("reason is %d bytes long", len(d.Reason))
	}
}

// Exact values and patterns mixed in one long list keep their meaning once
// the exact ones are a set.
func TestALongMixedListMatchesAsWritten(t *testing.T) {
	src := "issuer: github\nmatch:\n  repository: acme/app\n  actor:\n" + items(20, "    ", "user-%d") +
		"    - \"*[bot]\"\n    - {regex: \"admin-[0-9]+\"}\n    - \"true\"\n    - 42\ngrant:\n  token: {audience: x}\n"
	set := mustLoad(t, map[string]string{"p.yaml": src})
	for actor, want := range map[string]bool{
		"user-7": true, "dependabot[bot]": true, "admin-12": true, "true": true, "42": true,
		"user-20": false, "admin-x": false, "bot": false, "": false,
	} {
		d := set.Authorize("github", "p", sampleClaims(t, "github-push-main", map[string]any{"actor": actor}))
		if d.Allowed != want {
			t.Errorf("actor %q: allowed = %v, want %v (%s)", actor, d.Allowed, want, d.Reason)
		}
	}
}

func TestPolicyFilesAreReadWithinTheDirectoryAndTheSizeLimit(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, map[string]string{"deploy.yaml": good})
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "..data", "inside.yaml"), []byte(strings.Replace(good, "acme/app", "acme/web", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// As a Kubernetes ConfigMap mounts its files: links into ..data.
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join("..data", "inside.yaml"), "inside.yaml")
	t.Run("a symlink inside the directory loads", func(t *testing.T) {
		set, err := LoadDir(dir, testIssuers)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := set.Lookup("inside"); !ok || set.Len() != 2 {
			t.Errorf("policies = %v", set.Policies())
		}
	})

	link(filepath.Join(outside, "secret.yaml"), "escape.yaml")
	link(filepath.Join("..", filepath.Base(outside), "secret.yaml"), "relative.yaml")
	link("/dev/zero", "zero.yaml")
	link(filepath.Join(dir, "nothing.yaml"), "dangling.yaml")
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(good+"description: "+strings.Repeat("x", 2*MaxFileBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDir(dir, testIssuers)
	if err == nil {
		t.Fatal("loaded a directory with links outside it")
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join(dir, "escape.yaml") + ": read policy: symlink to " + filepath.Join(outside, "secret.yaml") + ", which is outside the policy directory",
		filepath.Join(dir, "relative.yaml") + ": read policy: symlink to",
		filepath.Join(dir, "zero.yaml") + ": read policy: symlink to /dev/zero, which is outside the policy directory",
		filepath.Join(dir, "dangling.yaml") + ": read policy: symlink that resolves to nothing",
		filepath.Join(dir, "big.yaml") + ": read policy: file is",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("load error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "inside.yaml") {
		t.Errorf("a link inside the directory was refused:\n%s", msg)
	}

	files, problems, err := ReadPolicyFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 5 || len(files) != 2 {
		t.Errorf("ReadPolicyFiles: %d files, problems %v", len(files), problems)
	}
}
