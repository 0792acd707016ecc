package trust

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/platform"
)

// Set is a compiled, validated collection of policies. It is immutable
// once built and safe for concurrent use; a reload builds a new Set.
type Set struct {
	// sorted, by name, is also how Lookup finds a policy: a binary search
	// of ten thousand names is fourteen comparisons, and a map beside it
	// would hold 40 bytes a policy for a few nanoseconds a request.
	sorted    []*Policy
	platforms platform.Set
}

func newSet(byName map[string]*Policy, platforms platform.Set) *Set {
	s := &Set{sorted: make([]*Policy, 0, len(byName)), platforms: platforms}
	for _, p := range byName {
		s.sorted = append(s.sorted, p)
	}
	slices.SortFunc(s.sorted, func(a, b *Policy) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// Len is the number of policies.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.sorted)
}

// Policies returns the policies sorted by name. The slice is the caller's.
func (s *Set) Policies() []*Policy {
	if s == nil {
		return nil
	}
	return append([]*Policy(nil), s.sorted...)
}

// Lookup finds a policy by name.
func (s *Set) Lookup(name string) (*Policy, bool) {
	if s == nil {
		return nil, false
	}
	i, ok := slices.BinarySearchFunc(s.sorted, name, func(p *Policy, name string) int { return strings.Compare(p.Name, name) })
	if !ok {
		return nil, false
	}
	return s.sorted[i], true
}

// Decision is the outcome of one authorization.
type Decision struct {
	Allowed bool
	Policy  *Policy // nil when the policy is unknown
	// Rule names the deciding rule: "match" when allowed, otherwise
	// "unknown_policy", "issuer", "deny[N].KEY", "deny[N]" or "match.KEY".
	Rule string
	// Reason tells a pipeline owner what decided, naming the claim and the
	// value wanted. Claim values are quoted and cut short.
	Reason string
	// Grant is what to mint, its templates filled in from the token: set
	// by Decide when the request is allowed.
	Grant grant.Spec
}

// Rules that are not a policy key.
const (
	RuleAllowed       = "match"
	RuleUnknownPolicy = "unknown_policy"
	RuleIssuer        = "issuer"
	RuleGrant         = "grant" // a template could not be filled in (Render failed)
)

// Authorize decides one request: the policy named policy must exist,
// accept tokens of the configured issuer named issuer, match no deny
// block, and satisfy every match key. Anything else is refused. The cost
// does not grow with the number of policies: one map lookup by name, then
// the policy's own precompiled conditions.
func (s *Set) Authorize(issuer, policy string, c *claims.Set) Decision {
	p, ok := s.Lookup(policy)
	if !ok {
		return Decision{Rule: RuleUnknownPolicy, Reason: fmt.Sprintf("unknown policy %s", claims.Describe(policy))}
	}
	return p.authorize(issuer, c)
}

func (p *Policy) authorize(issuer string, c *claims.Set) Decision {
	if issuer != p.Issuer {
		return Decision{Policy: p, Rule: RuleIssuer,
			Reason: fmt.Sprintf("policy %q does not accept tokens from issuer %s", p.Name, claims.Describe(issuer))}
	}
	denies := p.denies()
	for i := range denies {
		d := &denies[i]
		if d.matches(c) {
			return Decision{Policy: p, Rule: d.rule, Reason: d.reason(p.Name, c)}
		}
	}
	for _, cond := range p.match {
		if ok, v, present := cond.eval(c); !ok {
			return Decision{Policy: p, Rule: cond.matchRule(), Reason: cond.failure(p.Name, v, present)}
		}
	}
	// Built here, not kept with the policy: an allowed request goes on to
	// mint, beside which one small string is nothing, and ten thousand
	// policies would each hold theirs. A name is letters, digits and .-_
	// (policyName), so quoting it is putting it between quotes.
	return Decision{Allowed: true, Policy: p, Rule: RuleAllowed, Reason: `claims satisfy policy "` + p.Name + `"`}
}

// Decide is what the broker does before it mints, and what `ferry policy
// test` and `ferry policy explain` report: Authorize, then, when that
// allows, Render. A template that cannot be filled in is a denial by rule
// "grant".
func (s *Set) Decide(issuer, policy string, c *claims.Set) Decision {
	d := s.Authorize(issuer, policy, c)
	if !d.Allowed {
		return d
	}
	g, err := d.Policy.Render(c)
	if err != nil {
		return Decision{Policy: d.Policy, Rule: RuleGrant, Reason: err.Error()}
	}
	d.Grant = g
	return d
}

// Check is one condition of a policy evaluated against a token, for
// `ferry policy explain`.
type Check struct {
	Rule   string // "issuer", "match.ref", "deny[0].actor", "grant"
	Claim  string // the claim examined; "" for issuer and grant
	Passed bool   // for a deny rule: the token did not match it
	Detail string
}

// Explain evaluates every condition of the policy, not only up to the first
// failure, so a pipeline owner sees all that needs fixing at once. The
// request is allowed exactly when every check passed.
func (p *Policy) Explain(issuer string, c *claims.Set) []Check {
	checks := make([]Check, 0, 2+len(p.match)+len(p.denies()))
	ic := Check{Rule: RuleIssuer, Passed: issuer == p.Issuer}
	if ic.Passed {
		ic.Detail = fmt.Sprintf("issuer %q is accepted", issuer)
	} else {
		ic.Detail = fmt.Sprintf("policy %q does not accept tokens from issuer %s (it accepts %q)", p.Name, claims.Describe(issuer), p.Issuer)
	}
	checks = append(checks, ic)

	for _, cond := range p.match {
		ok, v, present := cond.eval(c)
		ch := Check{Rule: cond.matchRule(), Claim: cond.claim, Passed: ok}
		if ok {
			ch.Detail = fmt.Sprintf("%s = %s matches %s", cond.claim, claims.Describe(v.Text), cond.want())
		} else {
			ch.Detail = cond.failure(p.Name, v, present)
		}
		checks = append(checks, ch)
	}

	denies := p.denies()
	for i := range denies {
		d := &denies[i]
		matched := d.matches(c)
		ch := Check{Rule: d.rule, Claim: denyClaims(d), Passed: !matched}
		if matched {
			ch.Detail = d.reason(p.Name, c)
		} else {
			ch.Detail = fmt.Sprintf("deny rule %d (%s) does not match: %s", d.index, d.String(), denyMiss(d, c))
		}
		checks = append(checks, ch)
	}

	g, err := p.Render(c)
	gc := Check{Rule: RuleGrant, Passed: err == nil}
	if err != nil {
		gc.Detail = err.Error()
	} else {
		gc.Detail = g.Describe()
	}
	return append(checks, gc)
}

func denyClaims(d *denyBlock) string {
	names := make([]string, len(d.conds))
	for i, c := range d.conds {
		names[i] = c.claim
	}
	return strings.Join(names, ",")
}

// denyMiss names the first condition of a deny block the token escapes.
func denyMiss(d *denyBlock, c *claims.Set) string {
	for _, cond := range d.conds {
		ok, v, present := cond.eval(c)
		if ok {
			continue
		}
		if !present {
			return fmt.Sprintf("claim %q is missing", cond.claim)
		}
		return fmt.Sprintf("%s = %s", cond.claim, claims.Describe(v.Text))
	}
	return ""
}
