package trust

import (
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/platform"
)

// Policy is one compiled trust policy. Its exported fields are read-only
// once the Set holding it is built.
type Policy struct {
	Name        string
	Description string
	Issuer      string // a configured issuer's name, e.g. "github"
	// Grant is the credential the policy mints, as its kind parsed it; its
	// {{claim}} templates are filled in by Render.
	Grant grant.Spec

	match []*condition
	deny  *denyList // nil for none; shared by the policies of one load that deny alike

	// dir and base are the path the policy was loaded from, apart: the
	// policies of one directory share one copy of its name.
	dir, base string
}

// denies returns the policy's deny blocks, in the order written.
func (p *Policy) denies() []denyBlock {
	if p.deny == nil {
		return nil
	}
	return p.deny.blocks
}

// File is the path the policy was loaded from.
func (p *Policy) File() string { return p.dir + p.base }

// LoadOptions tunes loading to the broker's configuration.
type LoadOptions struct {
	// Issuers are the configured issuers' names; a policy naming another
	// is an error. nil skips the check (for `ferry policy validate`
	// without a config).
	Issuers []string
	// Kinds are the grant kinds a policy may grant; required.
	Kinds grant.Kinds
	// Platforms say which claims pin an identity and which policy shapes
	// are risky; required.
	Platforms platform.Set
}

// Render returns the policy's grant with every {{claim}} template filled in
// from c. A claim that is missing or unsafe for its field is a
// *claimtmpl.Error.
func (p *Policy) Render(c *claims.Set) (grant.Spec, error) {
	return p.Grant.Render(c)
}
