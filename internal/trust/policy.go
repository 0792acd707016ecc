package trust

import "time"

// Policy is one compiled trust policy. Its exported fields are read-only
// once the Set holding it is built.
type Policy struct {
	Name        string
	Description string
	Issuer      string // a configured issuer's name, e.g. "github"
	File        string // path the policy was loaded from
	Grant       Grant

	match       []*condition
	deny        []denyBlock
	tmpl        *grantTemplates // nil when the grant uses no {{claim}} templates
	allowReason string          // built once so an allowed request does not allocate
}

// Grant is the credential a policy mints. Exactly one field is non-nil.
type Grant struct {
	AWS   *AWSGrant
	GCP   *GCPGrant
	Token *TokenGrant
}

// Type names the grant: "aws", "gcp" or "token".
func (g Grant) Type() string {
	switch {
	case g.AWS != nil:
		return "aws"
	case g.GCP != nil:
		return "gcp"
	case g.Token != nil:
		return "token"
	}
	return ""
}

// MaxDuration is the longest lifetime a request may get.
func (g Grant) MaxDuration() time.Duration {
	switch {
	case g.AWS != nil:
		return g.AWS.Duration
	case g.GCP != nil:
		return g.GCP.Duration
	case g.Token != nil:
		return g.Token.Duration
	}
	return 0
}

// AWSGrant mints STS session credentials for a role.
type AWSGrant struct {
	RoleARN  string
	Duration time.Duration // 15m..12h, default 15m
	// SessionPolicy is the compact JSON of the inline session policy, ""
	// if none. On Policy.Grant it still holds the {{claim}} templates as
	// written; Policy.Render fills them in.
	SessionPolicy string
	SessionTags   []string // claim names passed as STS session tags
}

// GCPGrant mints a service-account access token.
type GCPGrant struct {
	ServiceAccount string
	Scopes         []string // default cloud-platform
	Delegates      []string // optional delegation chain
	Duration       time.Duration
	AccessBoundary []AccessBoundaryRule // optional downscoping
}

// AccessBoundaryRule is one credential access boundary rule.
type AccessBoundaryRule struct {
	AvailableResource    string
	AvailablePermissions []string
	Condition            *BoundaryCondition
}

// BoundaryCondition is a CEL condition on an access boundary rule.
type BoundaryCondition struct {
	Expression, Title, Description string
}

// TokenGrant mints a Ferry-signed JWT.
type TokenGrant struct {
	Audience string
	Duration time.Duration
	Claims   []string          // claim names copied from the CI token
	Extra    map[string]string // extra claims: name -> value, templates filled in by Render
}

// Duration limits per grant type: the cloud providers' own limits, cut
// down where a CI job has no business holding a credential longer.
const (
	awsMinDuration     = 15 * time.Minute // STS AssumeRole minimum
	awsMaxDuration     = 12 * time.Hour   // STS maximum (the role's own max may be lower)
	awsDefaultDuration = 15 * time.Minute
	gcpMinDuration     = time.Minute
	gcpMaxDuration     = time.Hour // generateAccessToken without the org policy exception
	gcpDefaultDuration = 10 * time.Minute
	tokMinDuration     = time.Minute
	tokMaxDuration     = time.Hour
	tokDefaultDuration = 5 * time.Minute
)

// defaultGCPScope is used when a gcp grant names no scopes.
const defaultGCPScope = "https://www.googleapis.com/auth/cloud-platform"
