package ghapp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// KindName is the github grant's key in a policy and in an answer.
const KindName = "github"

// Lifetime is an installation token's: GitHub fixes it.
const Lifetime = time.Hour

// The defaults of a grant that leaves owner or repositories out: the job's
// own account and repository.
const (
	defaultOwner      = "{{repository_owner}}"
	defaultRepository = "{{repository}}"
)

// Kind is the github grant kind: an installation token of the broker's
// GitHub App, limited to the policy's repositories and permissions.
type Kind struct{}

// Name implements grant.Kind.
func (Kind) Name() string { return KindName }

// Spec is a policy's github grant. On a policy's own spec Owner and
// Repositories hold the {{claim}} templates as written (the defaults
// included); Render fills them in, leaving Repositories as names within
// Owner.
type Spec struct {
	Owner        string
	Repositories []string
	// Permissions maps GitHub App permission names to read, write or
	// admin. Shared by a spec and its renderings: never modified.
	Permissions map[string]string

	// DefaultOwner and DefaultRepositories record that the policy left
	// the field out.
	DefaultOwner, DefaultRepositories bool

	owner *claimtmpl.Template   // nil when the owner is literal
	repos []*claimtmpl.Template // by index; nil for a literal entry
}

// Parse implements grant.Kind.
func (Kind) Parse(r *yamlpos.Reader, n *yaml.Node) grant.Spec {
	before := r.Count()
	n = refuseDuration(r, n)
	f, _ := r.Fields(n, "grant.github", "owner", "repositories", "permissions")
	if f == nil {
		return nil
	}
	g := &Spec{Owner: defaultOwner, DefaultOwner: true}
	if v := f.Value("owner"); v != nil {
		g.DefaultOwner = false
		if s, t, ok := claimtmpl.Read(r, v, "grant.github.owner"); ok {
			g.Owner, g.owner = s, t
			if why := checkOwner(s); t == nil && why != "" {
				r.Errorf(v, "grant.github.owner %q is not a GitHub account: %s", s, why)
			}
		}
	} else {
		g.owner, _ = claimtmpl.Parse(defaultOwner)
	}
	if v := f.Value("repositories"); v != nil {
		g.readRepositories(r, v)
	} else {
		t, _ := claimtmpl.Parse(defaultRepository)
		g.Repositories, g.repos, g.DefaultRepositories = []string{defaultRepository}, []*claimtmpl.Template{t}, true
	}
	if v := f.Value("permissions"); v == nil {
		r.Errorf(n, "grant.github.permissions is required: at least one permission, such as contents: read")
	} else {
		g.Permissions = readPermissions(r, v)
	}
	if r.Count() > before {
		return nil
	}
	return g
}

// refuseDuration records a duration key, which a github grant cannot take,
// and returns the block without it so that the rest is still checked.
func refuseDuration(r *yamlpos.Reader, n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "duration" {
			r.Errorf(k, "grant.github.duration: GitHub fixes an installation token's lifetime at %s; leave duration out (release at job end ends the token early)", yamlpos.FormatDuration(Lifetime))
			out := *n
			out.Content = slices.Concat(n.Content[:i:i], n.Content[i+2:])
			return &out
		}
	}
	return n
}

func (g *Spec) readRepositories(r *yamlpos.Reader, n *yaml.Node) {
	const what = "grant.github.repositories"
	if n.Kind != yaml.SequenceNode {
		r.Errorf(n, "%s must be a list of repository names", what)
		return
	}
	switch {
	case len(n.Content) == 0:
		r.Errorf(n, "%s is empty; leave it out for the job's own repository", what)
	case len(n.Content) > MaxRepositories:
		r.Errorf(n, "%s has %d entries; GitHub allows one token at most %d", what, len(n.Content), MaxRepositories)
	}
	seen := map[string]int{}
	for _, e := range n.Content {
		s, t, ok := claimtmpl.Read(r, e, what+" entries")
		if !ok {
			continue
		}
		g.Repositories = append(g.Repositories, s)
		g.repos = append(g.repos, t)
		if t != nil {
			continue
		}
		// A literal entry is checked now, against a literal owner; against
		// a templated one it can only be checked once that is filled in.
		owner := g.Owner
		if g.owner != nil {
			owner, _, _ = strings.Cut(s, "/")
		}
		name, why := splitRepository(s, owner)
		if why != "" {
			r.Errorf(e, "%s: %s", what, why)
			continue
		}
		key := strings.ToLower(name)
		if prev, dup := seen[key]; dup {
			r.Errorf(e, "%s: %q is listed twice (first at line %d)", what, s, prev)
		}
		seen[key] = e.Line
	}
}

func readPermissions(r *yamlpos.Reader, n *yaml.Node) map[string]string {
	const what = "grant.github.permissions"
	ps, _ := r.Pairs(n, what)
	if n.Kind == yaml.MappingNode && len(n.Content) == 0 {
		r.Errorf(n, "%s is empty: ask for at least one permission, such as contents: read", what)
	}
	out := make(map[string]string, len(ps))
	for _, kv := range ps {
		name := kv.Key.Value
		p, known := LookupPermission(name)
		if !known {
			msg := fmt.Sprintf("%s: %q is not a GitHub App permission", what, name)
			if s := suggest(name); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			r.Errorf(kv.Key, "%s", msg)
			continue
		}
		level, ok := r.Str(kv.Val, what+"."+name)
		if !ok {
			continue
		}
		if !p.Allows(level) {
			r.Errorf(kv.Val, "%s.%s: %q is not a level GitHub grants it (allowed: %s)", what, name, level, strings.Join(p.Levels, ", "))
			continue
		}
		out[name] = level
	}
	return out
}

// Kind implements grant.Spec.
func (*Spec) Kind() string { return KindName }

// MaxDuration implements grant.Spec: GitHub's fixed lifetime.
func (*Spec) MaxDuration() time.Duration { return Lifetime }

// FixedLifetime implements grant.FixedLifetime: a request may not ask for
// a duration.
func (*Spec) FixedLifetime() bool { return true }

// Rendered reports whether every template is filled in and every
// repository is a name within the owner: the only specs a Minter mints.
func (g *Spec) Rendered() bool {
	return g.owner == nil && !slices.ContainsFunc(g.repos, func(t *claimtmpl.Template) bool { return t != nil }) &&
		!slices.ContainsFunc(g.Repositories, func(r string) bool { return strings.Contains(r, "/") })
}

// Render implements grant.Spec. A rendered repository is a name within the
// owner: an OWNER/NAME value, as {{repository}} gives, must name the
// grant's owner, and is refused otherwise.
func (g *Spec) Render(c *claims.Set) (grant.Spec, error) {
	out := *g
	out.owner, out.repos = nil, nil
	if g.owner != nil {
		s, err := renderChecked(g.owner, "github.owner", c, func(s string) string {
			if why := checkOwner(s); why != "" {
				return "it is not a GitHub account: " + why
			}
			return ""
		})
		if err != nil {
			return nil, err
		}
		out.Owner = s
	}
	out.Repositories = make([]string, 0, len(g.Repositories))
	seen := map[string]bool{}
	for i, entry := range g.Repositories {
		field := fmt.Sprintf("github.repositories[%d]", i)
		var name string
		if t := g.repos[i]; t != nil {
			if _, err := renderChecked(t, field, c, func(s string) string {
				n, why := splitRepository(s, out.Owner)
				name = n
				return why
			}); err != nil {
				return nil, err
			}
		} else {
			var why string
			if name, why = splitRepository(entry, out.Owner); why != "" {
				return nil, claimtmpl.FieldError(field, why)
			}
		}
		if key := strings.ToLower(name); !seen[key] {
			seen[key] = true
			out.Repositories = append(out.Repositories, name)
		}
	}
	return &out, nil
}

// renderChecked fills in t and checks the value with check, which says
// what is wrong with it or "". The error names the claim when the template
// is that one claim alone, as {{repository}} is.
func renderChecked(t *claimtmpl.Template, field string, c *claims.Set, check func(string) string) (string, error) {
	s, err := t.Render(field, c)
	if err != nil {
		return "", err
	}
	why := check(s)
	if why == "" {
		return s, nil
	}
	if names := t.Claims(); len(names) == 1 && t.String() == "{{"+names[0]+"}}" {
		return "", claimtmpl.ClaimError(field, names[0], s, why)
	}
	return "", claimtmpl.FieldError(field, fmt.Sprintf("%s renders to %s: %s", t.String(), claims.Describe(s), why))
}

// fullNames writes the repositories as OWNER/NAME, leaving an entry that
// is one already (OWNER/NAME, or {{repository}}, which renders to one) as
// it is.
func (g *Spec) fullNames() []string {
	out := make([]string, len(g.Repositories))
	for i, r := range g.Repositories {
		if strings.Contains(r, "/") || g.isOwnRepository(i) {
			out[i] = r
		} else {
			out[i] = g.Owner + "/" + r
		}
	}
	return out
}

// isOwnRepository reports whether entry i is the job's own repository,
// {{repository}}, as written or by default.
func (g *Spec) isOwnRepository(i int) bool {
	return i < len(g.repos) && g.repos[i] != nil && g.repos[i].String() == defaultRepository
}

// Describe implements grant.Spec.
func (g *Spec) Describe() string {
	return fmt.Sprintf("would mint a GitHub App installation token for %s with %s; GitHub fixes its lifetime at %s",
		strings.Join(g.fullNames(), ", "), formatPermissions(g.Permissions), yamlpos.FormatDuration(Lifetime))
}

// Target implements grant.Spec: the owner's installation, narrowed to the
// repositories and permissions, with warnings for what reaches further
// than a read of named repositories.
func (g *Spec) Target() grant.Target {
	t := grant.Target{
		Credential: "GitHub App installation on " + g.Owner,
		Narrowing: []string{
			"repositories " + strings.Join(g.fullNames(), ", "),
			"permissions " + formatPermissions(g.Permissions),
		},
	}
	t.Warnings = append(g.permissionWarnings(), g.scopeWarnings()...)
	return t
}

func (g *Spec) permissionWarnings() []string {
	var w, writes, admins []string
	byReach := map[Reach][]string{}
	for _, name := range sortedKeys(g.Permissions) {
		level := g.Permissions[name]
		switch level {
		case Write:
			writes = append(writes, name)
		case Admin:
			admins = append(admins, name)
		}
		if p, _ := LookupPermission(name); p.Reach != InRepositories {
			byReach[p.Reach] = append(byReach[p.Reach], name+": "+level)
		}
	}
	if len(admins) > 0 {
		w = append(w, "admin permissions "+strings.Join(admins, ", ")+": the token can manage and delete what they cover")
	}
	if len(writes) > 0 {
		w = append(w, "write permissions "+strings.Join(writes, ", ")+": the token can change what it reaches, not only read it")
	}
	for _, name := range []string{"workflows", "administration", "secrets", "actions"} {
		if l := g.Permissions[name]; l == Write || l == Admin {
			w = append(w, riskyWrite[name])
		}
	}
	for _, reach := range []Reach{InOrganization, InAccount, InEnterprise} {
		if ps := byReach[reach]; len(ps) > 0 {
			w = append(w, fmt.Sprintf("%s permissions %s reach the owner's whole %s, whatever repositories lists", reach, strings.Join(ps, ", "), reach))
		}
	}
	return w
}

// riskyWrite explains the write permissions that reach beyond the code.
var riskyWrite = map[string]string{
	"workflows":      "workflows: write lets the token change workflow files, and with them what later runs with the repositories' secrets",
	"administration": "administration: write lets the token change repository settings: branch protection, collaborators, deletion",
	"secrets":        "secrets: write lets the token replace the repositories' Actions secrets",
	"actions":        "actions: write lets the token re-run, cancel and dispatch workflow runs",
}

// ownClaims are the claims the platform sets from the job's own
// repository or project. Any other claim in a repository name is one a
// job can steer (a branch name, an environment), and so reaches any name
// it can spell.
var ownClaims = map[string]bool{"repository": true, "repository_owner": true, "project_path": true, "namespace_path": true}

func (g *Spec) scopeWarnings() []string {
	var w []string
	if g.owner != nil {
		w = append(w, fmt.Sprintf("owner %s comes from the token: every account the App is installed on whose jobs this policy admits gets a token there", g.Owner))
	}
	own := false
	for i, t := range g.repos {
		if t == nil {
			continue
		}
		if g.isOwnRepository(i) {
			own = true
			continue
		}
		for _, c := range t.Claims() {
			if !ownClaims[c] {
				w = append(w, fmt.Sprintf("repository %s is named by claim %s, which the job can steer: it reaches any repository of the owner that claim can spell", g.Repositories[i], c))
				break
			}
		}
		if prefix, _, full := strings.Cut(g.Repositories[i], "/"); full && strings.Contains(prefix, "{{") && g.owner != nil {
			w = append(w, fmt.Sprintf("repository %s takes its owner from the token: it reaches that name in every account whose jobs this policy admits", g.Repositories[i]))
		}
	}
	if own {
		what := "repositories include the job's own ({{repository}})"
		if g.DefaultRepositories {
			what = "repositories default to the job's own ({{repository}})"
		}
		w = append(w, what+": each repository the policy's match admits gets a token for itself, so a match pinned only by repository_owner reaches every repository of the owner")
	}
	return w
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// NewMinter implements grant.Kind: the App in the config's github_app
// block. A broker without one mints no GitHub tokens and refuses github
// grants as unavailable; one whose App key does not load does not start.
func (Kind) NewMinter(_ context.Context, env grant.Env) (grant.Minter, error) {
	c := env.Config.GitHubApp
	if !c.Enabled() {
		return nil, nil
	}
	key, err := LoadKeyFile(c.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("github_app.private_key: %w", err)
	}
	m, err := New(Options{AppID: c.AppID, Key: key, APIURL: c.APIURL, Logger: env.Logger})
	if err != nil {
		return nil, fmt.Errorf("github_app: %w", err)
	}
	return m, nil
}
