// Package platform is what Ferry knows about a CI platform's ID tokens,
// kept in one place per platform (one package each, beside this one, in the
// way sigstore/fulcio keeps one package per CI issuer): which claims must
// arrive as strings or integer ids, which identify the job in the audit
// log, which pin a policy to one repository or project, what policy shapes
// are risky, and how to name the job to a cloud provider. The broker
// lists the platforms it knows in internal/registry.
package platform

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-broker/ferry/internal/claims"
)

// Platform describes one CI platform's tokens.
type Platform struct {
	// Name is the platform's short name, e.g. "github".
	Name string
	// Marker is a claim only this platform's tokens carry: a token with it
	// is this platform's.
	Marker string
	// Strings are claims that must arrive as JSON strings: a token whose
	// repository or ref is a number or a list is malformed (or forged to
	// confuse a matcher), so it is refused rather than coerced.
	Strings []string
	// IDs are numeric identifiers, accepted as an integer whether sent as
	// a string or a number (GitHub sends strings, GitLab either).
	IDs []string
	// Identifying claims are copied into every audit record, in this order.
	Identifying []string
	// Pins are the claims that tie a policy to one repository, project or
	// owner: a policy must pin at least one claim of some platform.
	Pins []Pin
	// Risks are policy shapes that widen who can reach a credential,
	// flagged by `ferry policy blast-radius`.
	Risks []Risk
	// Job names the job a token came from, for cloud providers' logs.
	Job func(c *claims.Set) Job
}

// Pin is a claim that identifies a repository, project or owner.
type Pin struct {
	Claim string
	// Path is set for OWNER/NAME path claims, which a pattern still pins
	// when its literal prefix holds the whole owner segment ("acme/*").
	Path bool
	// StableID names the id claim to pin as well when this one is pinned
	// by name only, and IDWarning says why (a re-created repository of the
	// same name gets a new id).
	StableID, IDWarning string
}

// Risk is a kind of token that should not reach a credential unless the
// policy means it to: when a token with these claim values passes the
// policy's conditions on them (and no deny block on one of them alone
// refuses it), blast radius warns with Message.
type Risk struct {
	Probe []ProbeClaim
	// Exact also warns when the policy's condition on a probe claim is a
	// pattern rather than exact text (a pin that should be literal).
	Exact   bool
	Message string
}

// ProbeClaim is one claim value of a Risk's probe token.
type ProbeClaim struct {
	Claim, Value string
}

// Job names a CI job for a cloud provider's logs and Ferry's own tokens.
type Job struct {
	// Who is the repository or project, e.g. "acme/app".
	Who string
	// Run is the workflow run or pipeline id; "" when the token has none.
	Run string
	// ID is the most specific id of the job the token has: GitHub's run
	// id, GitLab's job id; "" when it has none.
	ID string
	// Subject is a stable subject for a Ferry-signed token, built from the
	// identity rather than copied from sub, whose template a repository
	// owner can customise.
	Subject string
}

// Set is the platforms a broker knows, the first being the default for a
// policy that names none of them.
type Set []*Platform

// Of returns the platform whose tokens carry c's claims, nil when none
// does.
func (s Set) Of(c *claims.Set) *Platform {
	for _, p := range s {
		if _, ok := c.Get(p.Marker); ok {
			return p
		}
	}
	return nil
}

// Check refuses a token whose platform claims have the wrong JSON type.
// Rules apply by claim name whatever the platform, so a claim cannot
// dodge its rule by leaving out the marker.
func (s Set) Check(c *claims.Set) error {
	for _, p := range s {
		for _, name := range p.Strings {
			if k := c.Kind(name); k != 0 && k != claims.String {
				return &claims.TypeError{Claim: name, Want: "a string", Got: k.String()}
			}
		}
		for _, name := range p.IDs {
			k := c.Kind(name)
			if k == 0 {
				continue
			}
			v, _ := c.Get(name)
			if (k != claims.String && k != claims.Number) || !claims.IsInteger(v.Text) {
				got := k.String()
				if k == claims.String || k == claims.Number || k == claims.Bool {
					got = fmt.Sprintf("%s %q", k, v.Text)
				}
				return &claims.TypeError{Claim: name, Want: "an integer id", Got: got}
			}
		}
	}
	return nil
}

// Identify lists c's identifying claims, in the order its platform gives
// them, leaving out those the token does not carry. A token of no known
// platform has none.
func (s Set) Identify(c *claims.Set) []claims.Pair {
	p := s.Of(c)
	if p == nil {
		return nil
	}
	out := make([]claims.Pair, 0, len(p.Identifying))
	for _, name := range p.Identifying {
		if v, ok := c.Get(name); ok && v.Text != "" {
			out = append(out, claims.Pair{Name: name, Value: v.Text})
		}
	}
	return out
}

// Job names the job behind c. A token of no known platform is known by its
// subject.
func (s Set) Job(c *claims.Set) Job {
	if p := s.Of(c); p != nil {
		return p.Job(c)
	}
	return Job{Who: c.Subject, Subject: c.Subject}
}

// JobOfClaims names the job behind a set of identifying claims, as an
// audit record keeps them.
func (s Set) JobOfClaims(subject string, pairs []claims.Pair) Job {
	raw := make(map[string]any, len(pairs)+1)
	for _, p := range pairs {
		raw[p.Name] = p.Value
	}
	raw["sub"] = subject
	c, err := claims.FromMap(raw)
	if err != nil {
		return Job{Who: subject, Subject: subject}
	}
	return s.Job(c)
}

// subject is the pin every platform shares: sub holds the repository or
// project path in both GitHub's and GitLab's default format.
var subject = Pin{Claim: "sub", Path: true}

// Pin returns the pin on claim, if claim pins an identity on any platform.
func (s Set) Pin(claim string) (Pin, bool) {
	if claim == subject.Claim {
		return subject, true
	}
	for _, p := range s {
		for _, pin := range p.Pins {
			if pin.Claim == claim {
				return pin, true
			}
		}
	}
	return Pin{}, false
}

// PinList names every pin claim, for a message: "repository, …, or sub".
func (s Set) PinList() string {
	var names []string
	for _, p := range s {
		for _, pin := range p.Pins {
			names = append(names, pin.Claim)
		}
	}
	names = append(names, subject.Claim)
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// For returns the platforms whose tokens a policy is written for: those
// whose pin claims it matches on or whose name its issuer's name holds,
// else the default platform.
func (s Set) For(issuer string, matchClaims []string) Set {
	var out Set
	for _, p := range s {
		applies := strings.Contains(issuer, p.Name)
		for _, pin := range p.Pins {
			applies = applies || slices.Contains(matchClaims, pin.Claim)
		}
		if applies {
			out = append(out, p)
		}
	}
	if len(out) == 0 && len(s) > 0 {
		out = s[:1]
	}
	return out
}

// String names the platforms: "github, gitlab".
func (s Set) String() string {
	names := make([]string, len(s))
	for i, p := range s {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
