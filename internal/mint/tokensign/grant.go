package tokensign

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// KindName is the token grant's key in a policy and in an answer.
const KindName = "token"

// Lifetimes of a token grant: cut well below MaxLifetime, since an internal
// service's token should live as long as one job step.
const (
	MinGrantLifetime     = time.Minute
	MaxGrantLifetime     = time.Hour
	DefaultGrantLifetime = 5 * time.Minute
)

// TokenTypeJWT is the RFC 8693 token type of a Ferry-signed token.
const TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"

// Kind is the token grant kind: a JWT signed by the broker for an internal
// service, verifiable through the broker's discovery document and JWKS.
type Kind struct{}

// Name implements grant.Kind.
func (Kind) Name() string { return KindName }

// BearerTokenType implements grant.BearerKind: /v1/token serves token
// grants, as JWTs.
func (Kind) BearerTokenType() string { return TokenTypeJWT }

// Spec is a policy's token grant.
type Spec struct {
	Audience string
	Duration time.Duration
	Claims   []string          // claim names copied from the CI token
	Extra    map[string]string // extra claims: name -> value, templates filled in by Render

	extra map[string]*claimtmpl.Template // the extra claims that hold templates
}

// Parse implements grant.Kind.
func (Kind) Parse(r *yamlpos.Reader, n *yaml.Node) grant.Spec {
	before := r.Count()
	f, _ := r.Fields(n, "grant.token", "audience", "duration", "claims", "extra_claims")
	if f == nil {
		return nil
	}
	g := &Spec{}
	if v := f.Value("audience"); v == nil {
		r.Errorf(n, "grant.token.audience is required: the service that accepts the token")
	} else if s, ok := claimtmpl.Literal(r, v, "grant.token.audience"); ok {
		g.Audience = s
		if strings.TrimSpace(s) == "" {
			r.Errorf(v, "grant.token.audience is empty")
		}
	}
	g.Duration = r.Duration(f.Value("duration"), "grant.token.duration", MinGrantLifetime, MaxGrantLifetime, DefaultGrantLifetime)
	seen := map[string]bool{}
	if v := f.Value("claims"); v != nil {
		names, _ := r.StrList(v, "grant.token.claims")
		for i, s := range names {
			switch {
			case !claims.ValidName(s):
				r.Errorf(v.Content[i], "grant.token.claims: %q is not a claim name", s)
			case IsRegisteredClaim(s):
				r.Errorf(v.Content[i], "grant.token.claims: %q is set by Ferry itself", s)
			case seen[s]:
				r.Errorf(v.Content[i], "grant.token.claims: %q is listed twice", s)
			}
			seen[s] = true
		}
		g.Claims = names
	}
	if v := f.Value("extra_claims"); v != nil {
		ps, _ := r.Pairs(v, "grant.token.extra_claims")
		g.Extra = make(map[string]string, len(ps))
		for _, kv := range ps {
			name := kv.Key.Value
			switch {
			case !claims.ValidName(name):
				r.Errorf(kv.Key, "grant.token.extra_claims: %q is not a claim name", name)
				continue
			case IsRegisteredClaim(name):
				r.Errorf(kv.Key, "grant.token.extra_claims: %q is set by Ferry itself", name)
				continue
			case seen[name]:
				r.Errorf(kv.Key, "grant.token.extra_claims: %q is also copied by grant.token.claims", name)
				continue
			}
			s, t, ok := claimtmpl.Read(r, kv.Val, "grant.token.extra_claims."+name)
			if !ok {
				continue
			}
			g.Extra[name] = s
			if t != nil {
				if g.extra == nil {
					g.extra = map[string]*claimtmpl.Template{}
				}
				g.extra[name] = t
			}
		}
	}
	if r.Count() > before {
		return nil
	}
	return g
}

// Kind implements grant.Spec.
func (*Spec) Kind() string { return KindName }

// MaxDuration implements grant.Spec.
func (g *Spec) MaxDuration() time.Duration { return g.Duration }

// Render implements grant.Spec.
func (g *Spec) Render(c *claims.Set) (grant.Spec, error) {
	if g.extra == nil {
		return g, nil
	}
	out := *g
	out.extra = nil
	out.Extra = maps.Clone(g.Extra)
	for name, t := range g.extra {
		s, err := t.Render("token.extra_claims."+name, c)
		if err != nil {
			return nil, err
		}
		out.Extra[name] = s
	}
	return &out, nil
}

// Describe implements grant.Spec.
func (g *Spec) Describe() string {
	return fmt.Sprintf("would sign a token for audience %s for up to %s", g.Audience, yamlpos.FormatDuration(g.Duration))
}

// Target implements grant.Spec.
func (g *Spec) Target() grant.Target {
	t := grant.Target{Credential: g.Audience}
	if len(g.Claims) > 0 {
		t.Narrowing = append(t.Narrowing, "copies claims "+strings.Join(g.Claims, ", "))
	}
	return t
}

// NewMinter implements grant.Kind: a Signer on the config's token block.
// A broker without token.signing_key signs nothing and refuses token
// grants.
func (Kind) NewMinter(_ context.Context, env grant.Env) (grant.Minter, error) {
	c := env.Config.Token
	if c.SigningKey == "" {
		return nil, nil
	}
	active, err := LoadKeyFile(c.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("token.signing_key: %w", err)
	}
	var previous []*Key
	for _, p := range c.PreviousKeys {
		k, err := LoadKeyFile(p)
		if err != nil {
			return nil, fmt.Errorf("token.previous_keys: %w", err)
		}
		previous = append(previous, k)
	}
	if c.Issuer == "" {
		return nil, errors.New("token.issuer: required to sign tokens")
	}
	return NewSigner(c.Issuer, active, previous...)
}

// Answer is the contract's token object of an exchange's answer. Token is
// a bearer credential.
type Answer struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MintsLocally implements grant.Local: Mint signs with the broker's own
// key, and a token never sent is a token that does not exist.
func (s *Signer) MintsLocally() {}

// Mint implements grant.Minter.
func (s *Signer) Mint(ctx context.Context, req grant.Request) (*grant.Credential, error) {
	g := req.Spec.(*Spec)
	copied := make(map[string]string, len(g.Claims)+len(g.Extra))
	for _, name := range g.Claims {
		if v, ok := req.Claims.Get(name); ok {
			copied[name] = v.Text
		}
	}
	maps.Copy(copied, g.Extra)
	tok, err := s.Sign(ctx, Request{
		Audience: g.Audience,
		Subject:  req.Job.Subject,
		Claims:   copied,
		Lifetime: req.Lifetime,
		Now:      req.Now,
	})
	var bad *grant.BadGrantError
	switch {
	case errors.As(err, &bad):
		return nil, err
	case err != nil:
		// Signing is local: a failure is the broker's, not an upstream's.
		return nil, &grant.UnavailableError{Reason: "could not sign the token", RetryAfter: 5 * time.Second, Err: err}
	}
	return &grant.Credential{
		Answer:    &Answer{Token: tok.Token, ExpiresAt: tok.ExpiresAt},
		ExpiresAt: tok.ExpiresAt,
		ID:        tok.ID,
		Bearer:    &grant.Bearer{Token: tok.Token, Type: TokenTypeJWT},
		// Release puts the jti on the revocation list (release.go).
		Release: tok.ID,
	}, nil
}
