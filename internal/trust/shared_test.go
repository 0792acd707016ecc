package trust

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/ferry-broker/ferry/internal/mint/awssts"
)

func TestPoliciesOfOneShapeShareWhatTheyRepeat(t *testing.T) {
	files := map[string]string{}
	for i := range 3 {
		files[fmt.Sprintf("p%d.yaml", i)] = fmt.Sprintf(`issuer: github
match:
  repository: acme/app-%d
  ref: refs/heads/main
  job_workflow_ref: "acme/app-%d/.github/workflows/*.yml@refs/heads/main"
deny: [{actor: "*[bot]"}]
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/deploy-%d
    session_policy: {Statement: [{Effect: Allow, Action: "s3:*", Resource: "arn:aws:s3:::b/{{repository}}/*"}]}
`, i, i, i)
	}
	set := mustLoad(t, files)
	p0, _ := set.Lookup("p0")
	p1, _ := set.Lookup("p1")
	if p0.denies()[0].conds[0] != p1.denies()[0].conds[0] || p0.match[1] != p1.match[1] {
		t.Error("identical conditions are not shared")
	}
	if p0.match[0] == p1.match[0] || p0.match[2] == p1.match[2] {
		t.Error("different conditions are shared")
	}
	if p0.Grant.(*awssts.Spec).SessionPolicy != p1.Grant.(*awssts.Spec).SessionPolicy {
		t.Error("the session policies differ")
	}
	// Sharing changes no decision and no rendering.
	for i, name := range []string{"p0", "p1", "p2"} {
		repo := fmt.Sprintf("acme/app-%d", i)
		c := sampleClaims(t, "github-push-main", map[string]any{"repository": repo,
			"job_workflow_ref": repo + "/.github/workflows/deploy.yml@refs/heads/main"})
		d := set.Decide("github", name, c)
		if !d.Allowed {
			t.Fatalf("%s refused its own repository: %s", name, d.Reason)
		}
		if got, want := d.Grant.(*awssts.Spec).SessionPolicy, `arn:aws:s3:::b/`+repo+`/*`; !strings.Contains(got, want) {
			t.Errorf("%s rendered %s, want it to name %s", name, got, want)
		}
		if other := fmt.Sprintf("p%d", (i+1)%3); set.Decide("github", other, c).Allowed {
			t.Errorf("%s's token reached %s", name, other)
		}
	}
}

func TestDenyListsAndSessionTagsAreSharedOnlyWhenEqual(t *testing.T) {
	policy := func(deny string) string {
		return `issuer: github
match: {repository: acme/app, ref: refs/heads/main}
deny: ` + deny + `
grant: {aws: {role_arn: "arn:aws:iam::123456789012:role/deploy", session_tags: [repository, ref]}}
`
	}
	set := mustLoad(t, map[string]string{
		"a.yaml":     policy(`[{event_name: pull_request_target}, {actor: "*[bot]"}]`),
		"b.yaml":     policy(`[{event_name: pull_request_target}, {actor: "*[bot]"}]`),
		"order.yaml": policy(`[{actor: "*[bot]"}, {event_name: pull_request_target}]`),
		"glob.yaml":  policy(`[{event_name: pull_request_target}, {actor: "*[bot]*"}]`),
	})
	p := map[string]*Policy{}
	for _, name := range []string{"a", "b", "order", "glob"} {
		p[name], _ = set.Lookup(name)
	}
	if p["a"].deny != p["b"].deny {
		t.Error("equal deny lists are not shared")
	}
	for _, other := range []string{"order", "glob"} {
		if p["a"].deny == p[other].deny {
			t.Errorf("the deny list of %s is shared with a's, which differs", other)
		}
	}
	tags := func(p *Policy) []string { return p.Grant.(*awssts.Spec).SessionTags }
	if &tags(p["a"])[0] != &tags(p["b"])[0] {
		t.Error("equal session tag lists are not shared")
	}
	// The order decides which rule refuses: sharing must keep it.
	bot := sampleClaims(t, "github-push-main", map[string]any{"repository": "acme/app", "actor": "dependabot[bot]", "event_name": "pull_request_target"})
	for name, rule := range map[string]string{"a": "deny[0].event_name", "order": "deny[0].actor", "glob": "deny[0].event_name"} {
		if d := set.Authorize("github", name, bot); d.Allowed || d.Rule != rule {
			t.Errorf("%s: allowed=%v by rule %q, want refused by %q", name, d.Allowed, d.Rule, rule)
		}
	}
}

func TestAConditionSharedByMatchAndDenyKeepsEachRule(t *testing.T) {
	// ref: refs/heads/main is one condition in the match of one policy and
	// in the deny block of another; each must name its own rule.
	set := mustLoad(t, map[string]string{
		"main.yaml":     "issuer: github\nmatch: {repository: acme/app, ref: refs/heads/main}\ngrant: {token: {audience: x}}\n",
		"not-main.yaml": "issuer: github\nmatch: {repository: acme/app}\ndeny: [{ref: refs/heads/main}, {ref: refs/heads/main, actor: octocat}]\ngrant: {token: {audience: x}}\n",
	})
	m, _ := set.Lookup("main")
	n, _ := set.Lookup("not-main")
	if m.match[1] != n.denies()[0].conds[0] {
		t.Fatal("the equal conditions are not shared, so this test shows nothing")
	}
	dev := sampleClaims(t, "github-push-main", map[string]any{"repository": "acme/app", "ref": "refs/heads/dev"})
	if d := set.Authorize("github", "main", dev); d.Allowed || d.Rule != "match.ref" {
		t.Errorf("main: allowed=%v by rule %q, want refused by match.ref", d.Allowed, d.Rule)
	}
	onMain := sampleClaims(t, "github-push-main", map[string]any{"repository": "acme/app", "ref": "refs/heads/main", "actor": "octocat"})
	if d := set.Authorize("github", "not-main", onMain); d.Allowed || d.Rule != "deny[0].ref" {
		t.Errorf("not-main: allowed=%v by rule %q, want refused by deny[0].ref", d.Allowed, d.Rule)
	}
	if rule := n.denies()[1].rule; rule != "deny[1]" {
		t.Errorf("a block of two keys is rule %q, want deny[1]", rule)
	}
}

func TestPoliciesOfOneDirectoryShareItsName(t *testing.T) {
	policy := func(repo string) string {
		return "issuer: github\nmatch: {repository: acme/" + repo + "}\ngrant: {token: {audience: x}}\n"
	}
	dir := writeDir(t, map[string]string{"a.yaml": policy("a"), "b.yaml": policy("b")})
	set, err := LoadDir(dir, testIssuers)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := set.Lookup("a")
	b, _ := set.Lookup("b")
	if a.File() != filepath.Join(dir, "a.yaml") || b.File() != filepath.Join(dir, "b.yaml") {
		t.Fatalf("files %q and %q", a.File(), b.File())
	}
	if unsafe.StringData(a.dir) != unsafe.StringData(b.dir) {
		t.Error("each policy keeps its own copy of the directory's name")
	}
}
