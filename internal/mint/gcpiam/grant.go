package gcpiam

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// KindName is the gcp grant's key in a policy and in an answer.
const KindName = "gcp"

// DefaultLifetime is a gcp grant's lifetime when the policy names none.
const DefaultLifetime = 10 * time.Minute

// Kind is the gcp grant kind: a service account access token from the IAM
// Credentials API, optionally downscoped with a Credential Access Boundary.
type Kind struct{}

// Name implements grant.Kind.
func (Kind) Name() string { return KindName }

// BearerTokenType implements grant.BearerKind: /v1/token serves gcp
// grants, as access tokens.
func (Kind) BearerTokenType() string { return accessTokenType }

// accessTokenType is the RFC 8693 token type of an OAuth access token.
const accessTokenType = "urn:ietf:params:oauth:token-type:access_token"

// Spec is a policy's gcp grant.
type Spec struct {
	ServiceAccount string
	Scopes         []string
	Delegates      []string
	Duration       time.Duration
	AccessBoundary []BoundaryRule

	// Templates by access_boundary index; nil maps when there are none.
	resources, expressions map[int]*claimtmpl.Template
}

// Parse implements grant.Kind.
func (Kind) Parse(r *yamlpos.Reader, n *yaml.Node) grant.Spec {
	before := r.Count()
	f, _ := r.Fields(n, "grant.gcp", "service_account", "scopes", "delegates", "duration", "access_boundary")
	if f == nil {
		return nil
	}
	g := &Spec{Scopes: []string{DefaultScope}}
	if v := f.Value("service_account"); v == nil {
		r.Errorf(n, "grant.gcp.service_account is required")
	} else if s, ok := claimtmpl.Literal(r, v, "grant.gcp.service_account"); ok {
		g.ServiceAccount = s
		if err := ValidateServiceAccount(s); err != nil {
			r.Errorf(v, "grant.gcp.service_account %q is not a service account email such as deploy@PROJECT.iam.gserviceaccount.com: %v", s, err)
		}
	}
	if v := f.Value("scopes"); v != nil {
		scopes, _ := r.StrList(v, "grant.gcp.scopes")
		if len(scopes) == 0 {
			r.Errorf(v, "grant.gcp.scopes is empty; leave it out for cloud-platform")
		}
		for i, s := range scopes {
			if !strings.HasPrefix(s, "https://") || strings.Contains(s, "{{") || strings.IndexFunc(s, isSpaceOrControl) >= 0 {
				r.Errorf(v.Content[i], "grant.gcp.scopes: %q is not an OAuth scope URL such as %s", s, DefaultScope)
			}
		}
		g.Scopes = scopes
	}
	if v := f.Value("delegates"); v != nil {
		delegates, _ := r.StrList(v, "grant.gcp.delegates")
		for i, s := range delegates {
			if err := ValidateServiceAccount(s); err != nil {
				r.Errorf(v.Content[i], "grant.gcp.delegates: %q is not a service account email: %v", s, err)
			}
		}
		g.Delegates = delegates
	}
	g.Duration = r.Duration(f.Value("duration"), "grant.gcp.duration", MinLifetime, MaxLifetime, DefaultLifetime)
	if v := f.Value("access_boundary"); v != nil {
		g.readAccessBoundary(r, v)
	}
	if r.Count() > before {
		return nil
	}
	return g
}

func (g *Spec) readAccessBoundary(r *yamlpos.Reader, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		r.Errorf(n, "grant.gcp.access_boundary must be a non-empty list of rules")
		return
	}
	if len(n.Content) > MaxBoundaryRules {
		r.Errorf(n, "grant.gcp.access_boundary has %d rules; Google allows at most %d", len(n.Content), MaxBoundaryRules)
	}
	for i, rn := range n.Content {
		what := fmt.Sprintf("grant.gcp.access_boundary[%d]", i)
		f, _ := r.Fields(rn, what, "available_resource", "available_permissions", "condition")
		if f == nil {
			continue
		}
		var rule BoundaryRule
		if v := f.Value("available_resource"); v == nil {
			r.Errorf(rn, "%s.available_resource is required", what)
		} else if s, t, ok := claimtmpl.Read(r, v, what+".available_resource"); ok {
			rule.AvailableResource = s
			if !strings.HasPrefix(s, "//") {
				r.Errorf(v, "%s.available_resource %q must be a full resource name such as //storage.googleapis.com/projects/_/buckets/NAME", what, s)
			}
			if t != nil {
				g.resources = setTemplate(g.resources, i, t)
			}
		}
		if v := f.Value("available_permissions"); v == nil {
			r.Errorf(rn, "%s.available_permissions is required", what)
		} else {
			perms, _ := r.StrList(v, what+".available_permissions")
			if len(perms) == 0 {
				r.Errorf(v, "%s.available_permissions is empty", what)
			}
			for j, s := range perms {
				if !validPermission(s) || strings.Contains(s, "{{") {
					r.Errorf(v.Content[j], "%s.available_permissions: %q must be inRole:ROLE", what, s)
				}
			}
			rule.AvailablePermissions = perms
		}
		if v := f.Value("condition"); v != nil {
			rule.Condition = g.readCondition(r, v, what, i)
		}
		g.AccessBoundary = append(g.AccessBoundary, rule)
	}
}

func (g *Spec) readCondition(r *yamlpos.Reader, n *yaml.Node, what string, i int) *BoundaryCondition {
	f, _ := r.Fields(n, what+".condition", "expression", "title", "description")
	if f == nil {
		return nil
	}
	cond := &BoundaryCondition{}
	if v := f.Value("expression"); v == nil {
		r.Errorf(n, "%s.condition.expression is required", what)
	} else if s, t, ok := claimtmpl.Read(r, v, what+".condition.expression"); ok {
		cond.Expression = s
		if t != nil {
			if !templateInStringLiteral(s) {
				r.Errorf(v, "%s.condition.expression: a {{claim}} template must sit inside a quoted string literal", what)
			}
			g.expressions = setTemplate(g.expressions, i, t)
		}
	}
	if v := f.Value("title"); v != nil {
		cond.Title, _ = claimtmpl.Literal(r, v, what+".condition.title")
	}
	if v := f.Value("description"); v != nil {
		cond.Description, _ = claimtmpl.Literal(r, v, what+".condition.description")
	}
	return cond
}

func setTemplate(m map[int]*claimtmpl.Template, i int, t *claimtmpl.Template) map[int]*claimtmpl.Template {
	if m == nil {
		m = map[int]*claimtmpl.Template{}
	}
	m[i] = t
	return m
}

// templateInStringLiteral reports whether every template in a CEL
// expression sits inside a quoted string literal: a substituted value can
// then only ever be string data, never CEL syntax.
func templateInStringLiteral(expr string) bool {
	var quote byte
	for i := 0; i < len(expr); i++ {
		ch := expr[i]
		switch {
		case quote != 0 && ch == '\\':
			i++
		case quote != 0 && ch == quote:
			quote = 0
		case quote == 0 && (ch == '"' || ch == '\''):
			quote = ch
		case quote == 0 && ch == '{' && i+1 < len(expr) && expr[i+1] == '{':
			return false
		}
	}
	return true
}

// Kind implements grant.Spec.
func (*Spec) Kind() string { return KindName }

// MaxDuration implements grant.Spec.
func (g *Spec) MaxDuration() time.Duration { return g.Duration }

// Render implements grant.Spec.
func (g *Spec) Render(c *claims.Set) (grant.Spec, error) {
	if g.resources == nil && g.expressions == nil {
		return g, nil
	}
	out := *g
	out.resources, out.expressions = nil, nil
	out.AccessBoundary = make([]BoundaryRule, len(g.AccessBoundary))
	for i, rule := range g.AccessBoundary {
		if t := g.resources[i]; t != nil {
			s, err := t.Render(fmt.Sprintf("gcp.access_boundary[%d].available_resource", i), c)
			if err != nil {
				return nil, err
			}
			rule.AvailableResource = s
		}
		if t := g.expressions[i]; t != nil {
			s, err := t.Render(fmt.Sprintf("gcp.access_boundary[%d].condition.expression", i), c)
			if err != nil {
				return nil, err
			}
			cond := *rule.Condition
			cond.Expression = s
			rule.Condition = &cond
		}
		out.AccessBoundary[i] = rule
	}
	return &out, nil
}

// Describe implements grant.Spec.
func (g *Spec) Describe() string {
	return fmt.Sprintf("would mint a GCP access token for %s for up to %s", g.ServiceAccount, yamlpos.FormatDuration(g.Duration))
}

// Target implements grant.Spec.
func (g *Spec) Target() grant.Target {
	t := grant.Target{Credential: g.ServiceAccount, Narrowing: []string{"scopes " + strings.Join(g.Scopes, ", ")}}
	if len(g.Delegates) > 0 {
		t.Narrowing = append(t.Narrowing, "via delegates "+strings.Join(g.Delegates, ", "))
	}
	for _, r := range g.AccessBoundary {
		t.Narrowing = append(t.Narrowing, fmt.Sprintf("access boundary %s on %s", strings.Join(r.AvailablePermissions, ", "), r.AvailableResource))
	}
	return t
}

// NewMinter implements grant.Kind: the IAM Credentials client with
// Application Default Credentials. Without them the broker runs and
// refuses gcp grants.
func (Kind) NewMinter(ctx context.Context, env grant.Env) (grant.Minter, error) {
	m, err := New(ctx)
	if err != nil {
		env.Logger.Warn("GCP minter unavailable (no Application Default Credentials?); gcp grants will be refused", "err", err)
		return nil, nil
	}
	return m, nil
}

// Answer is the contract's gcp object of an exchange's answer. It holds a
// secret.
type Answer struct {
	AccessToken    string    `json:"access_token"`
	ExpiresAt      time.Time `json:"expires_at"`
	ServiceAccount string    `json:"service_account"`
}

// Mint implements grant.Minter.
func (m *Minter) Mint(ctx context.Context, req grant.Request) (*grant.Credential, error) {
	g := req.Spec.(*Spec)
	tok, err := m.GenerateAccessToken(ctx, Request{
		ServiceAccount: g.ServiceAccount,
		Scopes:         g.Scopes,
		Delegates:      g.Delegates,
		Lifetime:       req.Lifetime,
		AccessBoundary: g.AccessBoundary,
	})
	if err != nil {
		return nil, asGrantError(err)
	}
	return &grant.Credential{
		Answer:    &Answer{AccessToken: tok.AccessToken, ExpiresAt: tok.ExpiresAt, ServiceAccount: tok.ServiceAccount},
		ExpiresAt: tok.ExpiresAt,
		ID:        tok.ServiceAccount,
		Bearer:    &grant.Bearer{Token: tok.AccessToken, Type: accessTokenType},
	}, nil
}

// asGrantError turns the minter's errors into the grant seam's. Google's
// own code and message are kept for the caller; a Google that cannot be
// reached is said in words, the transport's detail (addresses) staying in
// Err for the server's log.
func asGrantError(err error) error {
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		return err // a *grant.BadGrantError, or a bug: left as is
	}
	out := &grant.UpstreamError{Provider: "Google IAM Credentials", Err: err}
	if strings.HasPrefix(ue.Op, downscopeOp) {
		out.Provider = "Google STS"
	}
	switch ue.Code {
	case codes.DeadlineExceeded:
		out.Message, out.Transient = "did not answer in time", true
	case codes.Unavailable:
		out.Message, out.Transient = "could not be reached", true
	case codes.Canceled:
		out.Message = "request canceled"
	case codes.Unknown:
		out.Message, out.Transient = "failed without a status", true
	default:
		out.Code = cmp.Or(ue.Reason, ue.Code.String())
		out.Message = ue.Message
		out.Transient = ue.Code == codes.ResourceExhausted || ue.Code == codes.Internal || ue.Code == codes.Aborted
	}
	return out
}
