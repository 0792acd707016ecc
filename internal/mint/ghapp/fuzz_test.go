package ghapp_test

import (
	"regexp"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

var (
	fuzzOwner = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,38}$`)
	fuzzRepo  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// Whatever a github block says, it loads with problems or not at all, and
// what loads renders only to repository names within one GitHub owner and
// permissions GitHub knows at levels it grants: never a path, a wildcard or
// "all".
func FuzzParseAndRender(f *testing.F) {
	for _, s := range []string{
		checkout,
		"permissions: {contents: read}\n",
		"owner: acme\nrepositories: [app, acme/infra, \"{{ref_name}}\"]\npermissions: {contents: write, members: read}\n",
		"repositories: [\"{{repository}}/x\", \"{{repository_owner}}/tools\"]\npermissions: {workflows: write}\n",
		"owner: \"{{actor}}\"\nrepositories: [\"{{repository}}\"]\npermissions: {repository_projects: admin}\n",
		"duration: 1h\npermissions: {contents: read}\n",
		"permissions: {}\n",
	} {
		f.Add(s)
	}
	c := granttest.Claims(f, "github-push-main", map[string]any{"ref_name": "main"})
	f.Fuzz(func(t *testing.T, src string) {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(src), &doc) != nil || len(doc.Content) != 1 {
			return
		}
		r := &yamlpos.Reader{File: "p.yaml"}
		spec := ghapp.Kind{}.Parse(r, doc.Content[0])
		if (spec == nil) == (r.Count() == 0) {
			t.Fatalf("spec %v with %d problems", spec, r.Count())
		}
		if spec == nil {
			return
		}
		rendered, err := spec.Render(c)
		if err != nil {
			return
		}
		g := rendered.(*ghapp.Spec)
		if !g.Rendered() || !fuzzOwner.MatchString(g.Owner) || len(g.Repositories) == 0 || len(g.Repositories) > ghapp.MaxRepositories || len(g.Permissions) == 0 {
			t.Fatalf("rendered %+v", *g)
		}
		for _, name := range g.Repositories {
			if !fuzzRepo.MatchString(name) || name == "." || name == ".." {
				t.Fatalf("repository %q", name)
			}
		}
		for name, level := range g.Permissions {
			if p, ok := ghapp.LookupPermission(name); !ok || !p.Allows(level) {
				t.Fatalf("permission %s: %s", name, level)
			}
		}
	})
}
