// Package gcpiam mints short-lived Google Cloud access tokens for a service
// account through the IAM Credentials API (generateAccessToken), optionally
// narrowed further with a Credential Access Boundary (downscoping).
//
// The broker's own Google identity (Application Default Credentials) must
// hold roles/iam.serviceAccountTokenCreator on every target service account;
// see deploy/gcp/README.md.
package gcpiam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	credentials "cloud.google.com/go/iam/credentials/apiv1"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ferry-broker/ferry/internal/grant"
)

// Lifetime bounds of a minted token. Google refuses more than one hour unless
// the organisation enables iam.allowServiceAccountCredentialLifetimeExtension;
// Ferry's credentials live minutes, so it never asks for more. Under a minute
// a token is likely to expire before the pipeline step that needs it starts.
const (
	MinLifetime = time.Minute
	MaxLifetime = time.Hour
)

// DefaultScope is requested when a grant names no scopes.
const DefaultScope = "https://www.googleapis.com/auth/cloud-platform"

// resourcePrefix names a service account in any project: Google resolves the
// project from the email, and "-" keeps the broker from needing to know it.
const resourcePrefix = "projects/-/serviceAccounts/"

// Minter mints access tokens with the broker's Google identity.
type Minter struct {
	client    *credentials.IamCredentialsClient
	downscope Downscope
}

// Downscope says where access-boundary token exchanges go (Google's Security
// Token Service). The zero value is production Google.
type Downscope struct {
	// UniverseDomain selects the STS at https://sts.UNIVERSE_DOMAIN/v1/token;
	// empty means googleapis.com.
	UniverseDomain string
	// HTTPClient sends the exchange; nil means http.DefaultClient. Each call
	// is bound to the caller's context whatever client is given.
	HTTPClient *http.Client
}

// Config configures NewWithConfig.
type Config struct {
	// ClientOptions configure the IAM Credentials client (endpoint,
	// credentials); none means Application Default Credentials against
	// iamcredentials.googleapis.com.
	ClientOptions []option.ClientOption
	// Downscope configures the token exchange used for access boundaries.
	Downscope Downscope
}

// New builds a Minter backed by the real IAM Credentials gRPC client. With
// no options it authenticates with Application Default Credentials.
func New(ctx context.Context, opts ...option.ClientOption) (*Minter, error) {
	return NewWithConfig(ctx, Config{ClientOptions: opts})
}

// NewWithConfig is New with the downscoping endpoint configurable too.
func NewWithConfig(ctx context.Context, cfg Config) (*Minter, error) {
	// The client library logs whole responses, access tokens included, at
	// debug level when GOOGLE_SDK_GO_LOGGING_LEVEL asks for it; a broker must
	// never let a token reach a log, so its logger is silenced last, after
	// any caller option.
	opts := append(append([]option.ClientOption(nil), cfg.ClientOptions...),
		option.WithLogger(slog.New(slog.DiscardHandler)),
		option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(recordAttempts)))
	client, err := credentials.NewIamCredentialsClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create IAM Credentials client: %w", err)
	}
	return &Minter{client: client, downscope: cfg.Downscope}, nil
}

// Close releases the client's connections.
func (m *Minter) Close() error {
	return m.client.Close()
}

// Request is one token to mint.
type Request struct {
	// ServiceAccount is the email of the account to act as.
	ServiceAccount string
	// Scopes are OAuth scopes; empty means DefaultScope.
	Scopes []string
	// Delegates are the emails of a delegation chain, each holding
	// serviceAccountTokenCreator on the next, the last on ServiceAccount.
	Delegates []string
	// Lifetime is how long the token lives, between MinLifetime and
	// MaxLifetime; the caller has already clamped it to the policy's.
	Lifetime time.Duration
	// AccessBoundary, when not empty, downscopes the token to these rules
	// (Cloud Storage only, at most 10 rules).
	AccessBoundary []BoundaryRule
}

// BoundaryRule is one rule of a Credential Access Boundary: the permissions
// (roles, as "inRole:roles/storage.objectViewer") the token keeps on one
// resource ("//storage.googleapis.com/projects/_/buckets/NAME").
type BoundaryRule struct {
	AvailableResource    string
	AvailablePermissions []string
	Condition            *BoundaryCondition
}

// BoundaryCondition narrows a BoundaryRule with an IAM condition (CEL), e.g.
// to objects under one prefix.
type BoundaryCondition struct {
	Expression, Title, Description string
}

// MaxBoundaryRules is Google's limit on rules in one access boundary.
const MaxBoundaryRules = 10

// Token is a minted access token. AccessToken is a secret: never log it.
type Token struct {
	AccessToken    string
	ExpiresAt      time.Time
	ServiceAccount string
}

// badGrant says a Request was refused before anything was sent to Google:
// the fault is in the grant, not upstream.
func badGrant(field, reason string) *grant.BadGrantError {
	return &grant.BadGrantError{Kind: KindName, Field: field, Reason: reason}
}

// GenerateAccessToken mints a token for req.ServiceAccount, downscoped when
// req.AccessBoundary has rules. Failures from Google are *UpstreamError; a
// request refused before any call is a *grant.BadGrantError.
func (m *Minter) GenerateAccessToken(ctx context.Context, req Request) (*Token, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = []string{DefaultScope}
	}
	delegates := make([]string, len(req.Delegates))
	for i, d := range req.Delegates {
		delegates[i] = resourcePrefix + d
	}
	actx, last := withLastAttempt(ctx)
	resp, err := m.client.GenerateAccessToken(actx, &credentialspb.GenerateAccessTokenRequest{
		Name:      resourcePrefix + req.ServiceAccount,
		Scope:     scopes,
		Delegates: delegates,
		Lifetime:  durationpb.New(req.Lifetime),
	})
	if err != nil {
		return nil, fromRPC(ctx, "generate access token for "+req.ServiceAccount, err, last)
	}
	// Fail closed on an answer that cannot be a usable token rather than
	// hand a pipeline an empty or timeless credential.
	if resp.GetAccessToken() == "" {
		return nil, &UpstreamError{Op: "generate access token for " + req.ServiceAccount, Code: codes.Internal, Message: "response has no access token"}
	}
	if err := resp.GetExpireTime().CheckValid(); err != nil || resp.GetExpireTime().AsTime().IsZero() {
		return nil, &UpstreamError{Op: "generate access token for " + req.ServiceAccount, Code: codes.Internal, Message: "response has no valid expire time"}
	}
	tok := &Token{
		AccessToken:    resp.GetAccessToken(),
		ExpiresAt:      resp.GetExpireTime().AsTime().UTC(),
		ServiceAccount: req.ServiceAccount,
	}
	if len(req.AccessBoundary) == 0 {
		return tok, nil
	}
	return m.downscopeToken(ctx, tok, req.AccessBoundary)
}

func validateRequest(req Request) error {
	if err := ValidateServiceAccount(req.ServiceAccount); err != nil {
		return badGrant("service_account", err.Error())
	}
	for _, d := range req.Delegates {
		if err := ValidateServiceAccount(d); err != nil {
			return badGrant("delegates", err.Error())
		}
	}
	for _, s := range req.Scopes {
		if s == "" || strings.IndexFunc(s, isSpaceOrControl) >= 0 {
			return badGrant("scopes", fmt.Sprintf("%q is not a scope", s))
		}
	}
	if req.Lifetime < MinLifetime || req.Lifetime > MaxLifetime {
		return badGrant("lifetime", fmt.Sprintf("%s is outside %s..%s", req.Lifetime, MinLifetime, MaxLifetime))
	}
	if err := ValidateAccessBoundary(req.AccessBoundary); err != nil {
		return badGrant("access_boundary", err.Error())
	}
	return nil
}

// ValidateAccessBoundary checks the rules' shape as Google's STS would, so a
// policy can be refused at load rather than at its first use.
func ValidateAccessBoundary(rules []BoundaryRule) error {
	if len(rules) > MaxBoundaryRules {
		return fmt.Errorf("%d rules, Google accepts at most %d", len(rules), MaxBoundaryRules)
	}
	for i, r := range rules {
		if r.AvailableResource == "" {
			return fmt.Errorf("rule %d: available_resource is empty", i+1)
		}
		if len(r.AvailablePermissions) == 0 {
			return fmt.Errorf("rule %d: available_permissions is empty", i+1)
		}
		for _, p := range r.AvailablePermissions {
			if !validPermission(p) {
				return fmt.Errorf("rule %d: permission %q must look like inRole:roles/NAME", i+1, p)
			}
		}
		if r.Condition != nil && strings.TrimSpace(r.Condition.Expression) == "" {
			return fmt.Errorf("rule %d: condition has no expression", i+1)
		}
	}
	return nil
}

// validPermission is the shape of an access boundary permission: a role,
// inRole:ROLE.
func validPermission(p string) bool {
	return strings.HasPrefix(p, "inRole:") && len(p) > len("inRole:")
}

// ValidateServiceAccount checks that email is a service account email
// (NAME@DOMAIN.gserviceaccount.com) that can be placed in a resource name
// unchanged. It is meant for policy load, so a typo fails before any
// pipeline depends on it.
func ValidateServiceAccount(email string) error {
	if email == "" {
		return errors.New("service account email is empty")
	}
	if len(email) > 254 {
		return fmt.Errorf("service account email is %d characters, longer than an email can be", len(email))
	}
	local, domain, ok := strings.Cut(email, "@")
	if !ok || strings.Contains(domain, "@") {
		return fmt.Errorf("service account %q must have exactly one @", email)
	}
	if !validLabel(local) {
		return fmt.Errorf("service account %q: the name before @ must be lowercase letters, digits and hyphens, not starting or ending with a hyphen", email)
	}
	const suffix = ".gserviceaccount.com"
	host, ok := strings.CutSuffix(domain, suffix)
	if !ok || host == "" {
		return fmt.Errorf("service account %q must end in %s (e.g. NAME@PROJECT.iam%s)", email, suffix, suffix)
	}
	for _, label := range strings.Split(host, ".") {
		if !validLabel(label) {
			return fmt.Errorf("service account %q: domain %q is not lowercase letters, digits, hyphens and dots", email, domain)
		}
	}
	return nil
}

// validLabel reports whether s is a lowercase DNS-style label: what Google
// allows in account ids, project ids and their domains.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}
