package ghapp_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
	"github.com/ferry-broker/ferry/internal/trust"
)

func render(t *testing.T, src string, edits map[string]any) (*ghapp.Spec, error) {
	t.Helper()
	spec := granttest.MustParse(t, ghapp.Kind{}, src)
	out, err := spec.Render(granttest.Claims(t, "github-push-main", edits))
	if err != nil {
		return nil, err
	}
	return out.(*ghapp.Spec), nil
}

func TestGitHubGrantDefaultsToTheJobsOwnRepository(t *testing.T) {
	g := granttest.MustParse(t, ghapp.Kind{}, "permissions: {contents: read}\n").(*ghapp.Spec)
	if g.Owner != "{{repository_owner}}" || !reflect.DeepEqual(g.Repositories, []string{"{{repository}}"}) ||
		!g.DefaultOwner || !g.DefaultRepositories || g.Rendered() || g.Kind() != "github" {
		t.Errorf("github grant = %+v", *g)
	}
	r, err := render(t, "permissions: {contents: read}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Owner != "acme" || !reflect.DeepEqual(r.Repositories, []string{"app"}) || !reflect.DeepEqual(r.Permissions, map[string]string{"contents": "read"}) || !r.Rendered() {
		t.Errorf("rendered = %+v", *r)
	}
}

func TestGitHubGrantRendersNamesWithinTheOwner(t *testing.T) {
	r, err := render(t, `
owner: acme
repositories: ["{{repository}}", infra, acme/tools, ACME/App, "svc-{{run_number}}"]
permissions: {contents: read, pull_requests: write}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	// acme/App is acme/app again (GitHub compares names without case):
	// asked for once.
	if want := []string{"app", "infra", "tools", "svc-412"}; !reflect.DeepEqual(r.Repositories, want) {
		t.Errorf("repositories = %q, want %q", r.Repositories, want)
	}
	if d := r.Describe(); d != "would mint a GitHub App installation token for acme/app, acme/infra, acme/tools, acme/svc-412 with contents: read, pull_requests: write; GitHub fixes its lifetime at 1h" {
		t.Errorf("Describe = %q", d)
	}
}

func TestGitHubGrantLifetimeIsGitHubs(t *testing.T) {
	g := granttest.MustParse(t, ghapp.Kind{}, "permissions: {contents: read}\n")
	f, ok := g.(grant.FixedLifetime)
	if !ok || !f.FixedLifetime() || g.MaxDuration() != time.Hour {
		t.Errorf("lifetime: fixed %v, max %s; want fixed at 1h", ok, g.MaxDuration())
	}
}

func TestGitHubGrantLimits(t *testing.T) {
	const perm = "permissions: {contents: read}\n"
	repos := func(n int) string {
		var b strings.Builder
		b.WriteString("owner: acme\nrepositories:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - r%d\n", i)
		}
		return b.String() + perm
	}
	granttest.Check(t, ghapp.Kind{}, map[string][2]string{
		"a duration, which GitHub fixes": {"duration: 15m\n" + perm,
			"p.yaml:1:1: grant.github.duration: GitHub fixes an installation token's lifetime at 1h; leave duration out (release at job end ends the token early)"},
		"no permissions":        {"owner: acme\n", "p.yaml:1:1: grant.github.permissions is required: at least one permission, such as contents: read"},
		"empty permissions":     {"permissions: {}\n", "p.yaml:1:14: grant.github.permissions is empty: ask for at least one permission, such as contents: read"},
		"permissions as a list": {"permissions: [contents]\n", "p.yaml:1:14: grant.github.permissions must be a mapping of key: value"},
		"a permission GitHub does not know": {"permissions: {content: read}\n",
			`p.yaml:1:15: grant.github.permissions: "content" is not a GitHub App permission (did you mean contents?)`},
		"a permission as the web page spells it": {"permissions: {pull-requests: write}\n",
			`p.yaml:1:15: grant.github.permissions: "pull-requests" is not a GitHub App permission (did you mean pull_requests?)`},
		"a permission that is no near miss": {"permissions: {repo: write}\n", `p.yaml:1:15: grant.github.permissions: "repo" is not a GitHub App permission`},
		"all, which is never asked for":     {"permissions: {all: write}\n", `p.yaml:1:15: grant.github.permissions: "all" is not a GitHub App permission`},
		"admin where GitHub has none":       {"permissions: {contents: admin}\n", `p.yaml:1:25: grant.github.permissions.contents: "admin" is not a level GitHub grants it (allowed: read, write)`},
		"admin where GitHub has it":         {"permissions: {repository_projects: admin}\n", ""},
		"read of write-only workflows":      {"permissions: {workflows: read}\n", `p.yaml:1:26: grant.github.permissions.workflows: "read" is not a level GitHub grants it (allowed: write)`},
		"write of read-only plan":           {"permissions: {organization_plan: write}\n", `p.yaml:1:34: grant.github.permissions.organization_plan: "write" is not a level GitHub grants it (allowed: read)`},
		"a level in capitals":               {"permissions: {contents: Read}\n", `p.yaml:1:25: grant.github.permissions.contents: "Read" is not a level GitHub grants it (allowed: read, write)`},
		"a level that is not a string":      {"permissions: {contents: [read]}\n", "p.yaml:1:25: grant.github.permissions.contents must be a string"},
		"a permission twice":                {"permissions: {contents: read, contents: write}\n", `p.yaml:1:31: grant.github.permissions: key "contents" appears twice (first at line 1)`},
		"an unknown key":                    {"repos: [app]\n" + perm, `p.yaml:1:1: unknown key "repos" in grant.github (allowed: owner, repositories, permissions)`},
		"an owner with a leading hyphen": {"owner: -acme\n" + perm,
			`p.yaml:1:8: grant.github.owner "-acme" is not a GitHub account: a GitHub login is letters, digits and hyphens, not starting with a hyphen`},
		"an owner longer than GitHub's logins": {"owner: " + strings.Repeat("a", 40) + "\n" + perm,
			fmt.Sprintf(`p.yaml:1:8: grant.github.owner %q is not a GitHub account: it is longer than GitHub's 39 characters`, strings.Repeat("a", 40))},
		"an owner template not closed": {"owner: \"{{repository_owner\"\n" + perm,
			`p.yaml:1:8: grant.github.owner: template "{{repository_owner" is not closed with }}`},
		"no repositories":          {"repositories: []\n" + perm, "p.yaml:1:15: grant.github.repositories is empty; leave it out for the job's own repository"},
		"a repository as a string": {"repositories: app\n" + perm, "p.yaml:1:15: grant.github.repositories must be a list of repository names"},
		"500 repositories":         {repos(500), ""},
		"501 repositories":         {repos(501), "p.yaml:3:3: grant.github.repositories has 501 entries; GitHub allows one token at most 500"},
		"a repository of another owner": {"owner: acme\nrepositories: [evil/app]\n" + perm,
			`p.yaml:2:16: grant.github.repositories: "evil/app" is a repository of "evil", outside the grant's owner "acme"`},
		"a repository of another owner's case": {"owner: acme\nrepositories: [Acme/app]\n" + perm, ""},
		"a path below a repository": {"owner: acme\nrepositories: [acme/app/x]\n" + perm,
			`p.yaml:2:16: grant.github.repositories: "acme/app/x" is not a repository name: a GitHub repository name is letters, digits, '.', '-' and '_'`},
		"a repository with a space": {"owner: acme\nrepositories: [\"my app\"]\n" + perm,
			`p.yaml:2:16: grant.github.repositories: "my app" is not a repository name: a GitHub repository name is letters, digits, '.', '-' and '_'`},
		"a wildcard repository": {"owner: acme\nrepositories: [\"*\"]\n" + perm,
			`p.yaml:2:16: grant.github.repositories: "*" is not a repository name: a GitHub repository name is letters, digits, '.', '-' and '_'`},
		"the parent directory": {"owner: acme\nrepositories: [\"..\"]\n" + perm,
			`p.yaml:2:16: grant.github.repositories: ".." is not a repository name: it is not a repository name`},
		"a repository twice": {"owner: acme\nrepositories: [app, App]\n" + perm, `p.yaml:2:21: grant.github.repositories: "App" is listed twice (first at line 2)`},
		"a repository name over 100": {"owner: acme\nrepositories: [" + strings.Repeat("r", 101) + "]\n" + perm,
			fmt.Sprintf(`p.yaml:2:16: grant.github.repositories: %q is not a repository name: it is longer than GitHub's 100 characters`, strings.Repeat("r", 101))},
		"the .github repository":                      {"owner: acme\nrepositories: [.github]\n" + perm, ""},
		"an owner template with a literal repository": {"repositories: [infra]\n" + perm, ""},
	})
}

func TestGitHubGrantRefusesRenderedValuesThatAreNoRepositoryOfTheOwner(t *testing.T) {
	tests := []struct {
		name, src string
		edits     map[string]any
		want      string
	}{
		{"the job's repository, of another owner than the policy's", "owner: acme\nrepositories: [\"{{repository}}\"]\npermissions: {contents: read}\n",
			map[string]any{"repository": "evil/app"},
			`claim "repository" = "evil/app" cannot be used in github.repositories[0]: "evil/app" is a repository of "evil", outside the grant's owner "acme"`},
		{"a GitLab job, whose token names no repository_owner", "permissions: {contents: read}\n",
			map[string]any{"repository_owner": nil},
			`claim "repository_owner" cannot be used in github.owner: the token does not carry it`},
		{"an owner claim that is no GitHub login", "permissions: {contents: read}\n",
			map[string]any{"repository_owner": "acme.corp"},
			`claim "repository_owner" = "acme.corp" cannot be used in github.owner: it is not a GitHub account: a GitHub login is letters, digits and hyphens, not starting with a hyphen`},
		{"a composite that renders to no repository name", "owner: acme\nrepositories: [\"svc-{{actor}}\"]\npermissions: {contents: read}\n",
			map[string]any{"actor": "bot@example"},
			`github.repositories[0] cannot be filled in: svc-{{actor}} renders to "svc-bot@example": "svc-bot@example" is not a repository name`},
		{"a path below the job's repository", "repositories: [\"{{repository}}/x\"]\npermissions: {contents: read}\n", nil,
			`github.repositories[0] cannot be filled in: {{repository}}/x renders to "acme/app/x"`},
		{"a literal repository of another owner than the token's", "repositories: [acme/infra]\npermissions: {contents: read}\n",
			map[string]any{"repository_owner": "other"},
			`github.repositories[0] cannot be filled in: "acme/infra" is a repository of "acme", outside the grant's owner "other"`},
		{"a wildcard in a claim", "owner: acme\nrepositories: [\"{{ref_name}}\"]\npermissions: {contents: read}\n",
			map[string]any{"ref_name": "*"}, `claim "ref_name" = "*" cannot be used in github.repositories[0]: contains "*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, tt.src, tt.edits)
			var te *claimtmpl.Error
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render: %v, want a *claimtmpl.Error saying %q", err, tt.want)
			}
		})
	}
}

func TestGitHubGrantTarget(t *testing.T) {
	g := granttest.MustParse(t, ghapp.Kind{}, "owner: acme\nrepositories: [app, infra]\npermissions: {contents: read, issues: read}\n")
	got := g.Target()
	want := grant.Target{Credential: "GitHub App installation on acme",
		Narrowing: []string{"repositories acme/app, acme/infra", "permissions contents: read, issues: read"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Target = %#v, want %#v (no warnings for reading named repositories)", got, want)
	}
}

func TestGitHubGrantWarnings(t *testing.T) {
	const named = "owner: acme\nrepositories: [app]\n"
	tests := []struct {
		name, src string
		want      []string // each a substring of one warning
	}{
		{"a write permission", named + "permissions: {contents: write, issues: read}\n",
			[]string{"write permissions contents: the token can change what it reaches"}},
		{"workflows", named + "permissions: {workflows: write}\n",
			[]string{"write permissions workflows:", "workflows: write lets the token change workflow files"}},
		{"an admin permission", named + "permissions: {repository_projects: admin}\n",
			[]string{"admin permissions repository_projects: the token can manage and delete"}},
		{"an organization permission", named + "permissions: {members: read, contents: read}\n",
			[]string{"organization permissions members: read reach the owner's whole organization, whatever repositories lists"}},
		{"the defaults", "permissions: {contents: read}\n", []string{
			"owner {{repository_owner}} comes from the token: every account the App is installed on",
			"repositories default to the job's own ({{repository}}): each repository the policy's match admits gets a token for itself, so a match pinned only by repository_owner reaches every repository of the owner"}},
		{"the job's own repository named", "owner: acme\nrepositories: [\"{{repository}}\"]\npermissions: {contents: read}\n",
			[]string{"repositories include the job's own ({{repository}})"}},
		{"a repository a branch name steers", "owner: acme\nrepositories: [\"{{ref_name}}\"]\npermissions: {contents: read}\n",
			[]string{"repository {{ref_name}} is named by claim ref_name, which the job can steer"}},
		{"a name in every account", "repositories: [\"{{repository_owner}}/tools\"]\npermissions: {contents: read}\n",
			[]string{"owner {{repository_owner}} comes from the token", "repository {{repository_owner}}/tools takes its owner from the token: it reaches that name in every account"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := granttest.MustParse(t, ghapp.Kind{}, tt.src).Target().Warnings
			if len(w) != len(tt.want) {
				t.Errorf("warnings %q, want %d", w, len(tt.want))
			}
			for _, sub := range tt.want {
				if !strings.Contains(strings.Join(w, "\n"), sub) {
					t.Errorf("warnings %q lack %q", w, sub)
				}
			}
		})
	}
}

// Through the policy loader, as `ferry policy` and the broker meet it.
func TestGitHubPolicyLoadsDecidesAndShowsItsBlastRadius(t *testing.T) {
	set, err := trust.LoadFiles(map[string][]byte{"checkout.yaml": []byte(`
issuer: github
match:
  repository_owner: acme
  repository_owner_id: "45678901"
  ref: refs/heads/main
  environment: production
grant:
  github:
    repositories: ["{{repository}}", infra]
    permissions: {contents: read}
`)}, trust.LoadOptions{Issuers: []string{"github"}, Kinds: registry.Kinds(), Platforms: registry.Platforms()})
	if err != nil {
		t.Fatal(err)
	}
	d := set.Decide("github", "checkout", granttest.Claims(t, "github-environment-production", nil))
	if !d.Allowed {
		t.Fatalf("denied: %s", d.Reason)
	}
	g := d.Grant.(*ghapp.Spec)
	if g.Owner != "acme" || !reflect.DeepEqual(g.Repositories, []string{"app", "infra"}) {
		t.Errorf("decided grant = %+v", *g)
	}
	exp := trust.BlastRadius(set)
	if len(exp) != 1 || exp[0].Grant != "github" || exp[0].Credential != "GitHub App installation on {{repository_owner}}" ||
		!reflect.DeepEqual(exp[0].Narrowing, []string{"repositories {{repository}}, {{repository_owner}}/infra", "permissions contents: read"}) {
		t.Errorf("blast radius = %+v", exp)
	}

	_, err = trust.LoadFiles(map[string][]byte{"p.yaml": []byte("issuer: github\nmatch: {repository: acme/app}\ngrant:\n  github:\n    duration: 1h\n    permissions: {contents: read}\n")},
		trust.LoadOptions{Issuers: []string{"github"}, Kinds: registry.Kinds(), Platforms: registry.Platforms()})
	if err == nil || !strings.Contains(err.Error(), "p.yaml:5:5: grant.github.duration: GitHub fixes") {
		t.Errorf("a github grant with a duration loaded: %v", err)
	}
}
