// Package grant is the seam between Ferry's core and the kinds of
// credential it mints (aws, gcp, token, github…). A kind is one package
// that implements Kind: it reads its block of a policy's grant:, owns its
// provider's limits, fills in its {{claim}} templates, says what it grants
// for blast radius and explain, and mints (and may end early) the
// credential. trust and exchange work only through these interfaces; the
// kinds the broker knows are listed in one place, internal/registry.
package grant

import (
	"context"
	"log/slog"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// Kind is one kind of credential.
type Kind interface {
	// Name is the kind's key under a policy's grant: and of its credential
	// in the exchange's answer, e.g. "aws".
	Name() string
	// Parse reads the kind's block (the value of grant.NAME), recording
	// every problem in r at its position. It returns nil when there were
	// problems.
	Parse(r *yamlpos.Reader, n *yaml.Node) Spec
	// NewMinter builds the kind's minter from the broker's config. It
	// returns (nil, nil) when this broker cannot mint the kind (no
	// credentials for the provider, say; the kind logs why), and an error
	// when the config asks for it and is wrong.
	NewMinter(ctx context.Context, env Env) (Minter, error)
}

// Spec is one policy's grant of a kind, compiled at load and read-only.
type Spec interface {
	// Kind is the name of the Kind that parsed it.
	Kind() string
	// MaxDuration is the longest lifetime a request may get.
	MaxDuration() time.Duration
	// Render returns the spec with every {{claim}} template filled in from
	// c. A claim that is missing or unsafe for its field is a
	// *claimtmpl.Error. A spec without templates may return itself.
	Render(c *claims.Set) (Spec, error)
	// Describe says what would be minted, for `ferry policy explain`.
	Describe() string
	// Target says what the grant reaches, for blast radius.
	Target() Target
}

// FixedLifetime is implemented by specs whose provider fixes the
// credential's lifetime (GitHub's installation tokens live an hour): a
// request may not ask for a duration.
type FixedLifetime interface {
	FixedLifetime() bool
}

// Target is what a grant reaches, for `ferry policy blast-radius`.
type Target struct {
	// Credential names it: a role ARN, a service account, an audience.
	Credential string
	// Narrowing lists what limits the credential: a session policy, scopes,
	// an access boundary, repositories and permissions.
	Narrowing []string
	// Warnings are the kind's own risk flags (write permissions, wide
	// scopes).
	Warnings []string
}

// Env is what a kind's minter may be built from.
type Env struct {
	Config *config.Config
	Logger *slog.Logger
}

// Minter mints credentials of one kind.
type Minter interface {
	Mint(ctx context.Context, req Request) (*Credential, error)
}

// Request is one credential to mint.
type Request struct {
	Policy string
	// Spec is the policy's spec with its templates filled in; always the
	// minter's own kind.
	Spec Spec
	// Lifetime is what the caller gets, already clamped to the spec's
	// MaxDuration.
	Lifetime time.Duration
	// Claims are the verified token's claims.
	Claims *claims.Set
	// Job names the pipeline job, for the provider's logs.
	Job platform.Job
	// RequestID is the exchange's request id: unique per grant and not a
	// secret, so a kind may tag the credential with it (to end that one
	// credential at release, or to find it in the provider's logs).
	RequestID string
	// Now is the exchange's clock.
	Now time.Time
}

// Credential is a minted credential. Answer holds secrets: it goes to the
// caller and nowhere else.
type Credential struct {
	// Answer is the kind's object in the exchange's answer, marshalled
	// under the kind's name.
	Answer any
	// ExpiresAt is when the credential stops working.
	ExpiresAt time.Time
	// ID identifies the credential in the audit log without revealing it:
	// an AWS access key id, a token's jti.
	ID string
	// Bearer is set by kinds whose credential is a single bearer token,
	// which RFC 8693's /v1/token can hand out.
	Bearer *Bearer
	// Release is what the kind needs to end the credential early (a token
	// id, a session to deny, an installation): never a secret, kept by the
	// broker until ExpiresAt and handed back to the kind's Releaser. ""
	// when there is nothing the kind can end.
	Release string
	// Scope lists what the credential may do, in a form safe to audit
	// ("contents:read" for a GitHub token's permission): the audit record
	// keeps it and `ferry audit report` counts grants by it. Nil when the
	// kind has nothing to say beyond the policy.
	Scope []string
}

// Local is implemented by minters whose Mint has no effect outside the
// broker (it signs, and calls no provider and keeps no state), so that a
// credential they made and the broker then withheld exists nowhere. The
// exchange may so mint before it claims the token's jti, and claim it
// together with the grant's release record: one step to a shared replay
// store where minting between the two takes two.
type Local interface {
	MintsLocally()
}

// Releaser is implemented by minters that can end a credential before it
// expires (release at job end).
type Releaser interface {
	Release(ctx context.Context, req ReleaseRequest) (Released, error)
}

// ReleaseRequest is one credential to end early.
type ReleaseRequest struct {
	Policy string
	// State is the credential's Release as it was minted.
	State     string
	ExpiresAt time.Time
	// Presented is the credential itself, when the job must present it for
	// the provider to end it (GitHub deletes an installation token only
	// when shown it); "" otherwise. It is a secret: never keep or log it.
	Presented string
	Now       time.Time
	// Shared is the broker's state that every replica sees, scoped to the
	// kind (a revocation list, a lock); the exchange always sets it.
	Shared Shared
}

// Released says what ending a credential did.
type Released struct {
	// Revoked is set when the credential stopped working now, not at its
	// expiry.
	Revoked bool
	// Detail says it in words, for the caller and the audit log.
	Detail string
}

// Bearer is a credential that is one bearer token.
type Bearer struct {
	Token string
	// Type is its RFC 8693 token type URI.
	Type string
}

// BearerKind is implemented by kinds whose every credential is a bearer
// token (Credential.Bearer set), so /v1/token can serve their policies.
type BearerKind interface {
	// BearerTokenType is the RFC 8693 token type URI of the kind's bearer
	// tokens, e.g. urn:ietf:params:oauth:token-type:jwt.
	BearerTokenType() string
}

// Kinds is a list of kinds, looked up by name.
type Kinds []Kind

// Lookup finds the kind of that name.
func (ks Kinds) Lookup(name string) (Kind, bool) {
	for _, k := range ks {
		if k.Name() == name {
			return k, true
		}
	}
	return nil, false
}

// Names lists the kinds' names in order.
func (ks Kinds) Names() []string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name()
	}
	return names
}

// As finds what else a minter can do (a Releaser, an Introspector): the
// first minter in m's chain of wrappers, each giving the next by Unwrap,
// that is a T.
func As[T any](m Minter) (T, bool) {
	for m != nil {
		if t, ok := m.(T); ok {
			return t, true
		}
		u, ok := m.(interface{ Unwrap() Minter })
		if !ok {
			break
		}
		m = u.Unwrap()
	}
	var zero T
	return zero, false
}
