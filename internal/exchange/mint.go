package exchange

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/trust"
)

// mint calls the minter for the grant's type and returns the caller's
// result with the non-secret audit view of it.
func (s *Service) mint(ctx context.Context, policy string, g trust.Grant, lifetime time.Duration, id *identity.Identity) (*Result, *audit.Credential, error) {
	switch {
	case g.AWS != nil:
		return s.mintAWS(ctx, policy, g.AWS, lifetime, id.Claims)
	case g.GCP != nil:
		return s.mintGCP(ctx, policy, g.GCP, lifetime)
	case g.Token != nil:
		return s.mintToken(ctx, policy, g.Token, lifetime, id.Claims)
	}
	return nil, nil, fmt.Errorf("policy %q has no grant", policy)
}

func notConfigured(kind, policy string) *Error {
	return &Error{Code: Unavailable, RetryAfter: time.Minute,
		Description: fmt.Sprintf("policy %q grants %s credentials, but this broker has no %s minter configured", policy, kind, kind)}
}

func upstream(provider string, err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: UpstreamError, Description: provider + " did not answer in time", Err: err}
	}
	return &Error{Code: UpstreamError, Description: provider + " failed: " + err.Error(), Err: err}
}

func (s *Service) mintAWS(ctx context.Context, policy string, g *trust.AWSGrant, lifetime time.Duration, c *claims.Set) (*Result, *audit.Credential, error) {
	if s.d.AWS == nil {
		return nil, nil, notConfigured("aws", policy)
	}
	repo, run := principal(c)
	tags := make([]awssts.Tag, 0, len(g.SessionTags))
	for _, name := range g.SessionTags {
		// A missing claim is left out rather than sent empty: a role whose
		// trust policy conditions on the tag then refuses, as it should.
		if v, ok := c.Get(name); ok {
			tags = append(tags, awssts.Tag{Key: name, Value: v.Text})
		}
	}
	creds, err := s.d.AWS.AssumeRole(ctx, awssts.Request{
		RoleARN:        g.RoleARN,
		Duration:       lifetime,
		SessionPolicy:  g.SessionPolicy,
		SessionName:    sessionName(repo, run),
		SourceIdentity: repo,
		Tags:           tags,
	})
	if err != nil {
		return nil, nil, upstream("AWS STS", err)
	}
	return &Result{
			ExpiresAt: creds.Expiration,
			AWS: &AWS{
				AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken,
				Expiration: creds.Expiration, RoleARN: creds.RoleARN, AssumedRoleARN: creds.AssumedRoleARN,
			},
		},
		&audit.Credential{Type: "aws", ID: creds.AccessKeyID, ExpiresAt: creds.Expiration}, nil
}

// principal names the pipeline for CloudTrail: the repository (GitHub) or
// project (GitLab), and the run or job.
func principal(c *claims.Set) (repo, run string) {
	repo = c.Text("repository")
	if repo == "" {
		repo = c.Text("project_path")
	}
	if repo == "" {
		repo = c.Subject
	}
	run = c.Text("run_id")
	if run == "" {
		run = c.Text("job_id")
	}
	return repo, run
}

// sessionName keeps the run id whole and shortens the repository, so a long
// name never cuts off the part that finds the run.
func sessionName(repo, run string) string {
	const max = 64
	if run == "" {
		return repo
	}
	room := max - len(run) - 1
	if room < 2 {
		return run
	}
	if len(repo) > room {
		repo = repo[:room]
	}
	return repo + "@" + run
}

func (s *Service) mintGCP(ctx context.Context, policy string, g *trust.GCPGrant, lifetime time.Duration) (*Result, *audit.Credential, error) {
	if s.d.GCP == nil {
		return nil, nil, notConfigured("gcp", policy)
	}
	rules := make([]gcpiam.BoundaryRule, 0, len(g.AccessBoundary))
	for _, r := range g.AccessBoundary {
		br := gcpiam.BoundaryRule{AvailableResource: r.AvailableResource, AvailablePermissions: r.AvailablePermissions}
		if r.Condition != nil {
			br.Condition = &gcpiam.BoundaryCondition{Expression: r.Condition.Expression, Title: r.Condition.Title, Description: r.Condition.Description}
		}
		rules = append(rules, br)
	}
	tok, err := s.d.GCP.GenerateAccessToken(ctx, gcpiam.Request{
		ServiceAccount: g.ServiceAccount,
		Scopes:         g.Scopes,
		Delegates:      g.Delegates,
		Lifetime:       lifetime,
		AccessBoundary: rules,
	})
	if err != nil {
		return nil, nil, upstream("Google IAM Credentials", err)
	}
	return &Result{
			ExpiresAt: tok.ExpiresAt,
			GCP:       &GCP{AccessToken: tok.AccessToken, ExpiresAt: tok.ExpiresAt, ServiceAccount: tok.ServiceAccount},
		},
		&audit.Credential{Type: "gcp", ID: tok.ServiceAccount, ExpiresAt: tok.ExpiresAt}, nil
}

func (s *Service) mintToken(ctx context.Context, policy string, g *trust.TokenGrant, lifetime time.Duration, c *claims.Set) (*Result, *audit.Credential, error) {
	if s.d.Token == nil {
		return nil, nil, notConfigured("token", policy)
	}
	copied := make(map[string]string, len(g.Claims)+len(g.Extra))
	for _, name := range g.Claims {
		if v, ok := c.Get(name); ok {
			copied[name] = v.Text
		}
	}
	for name, v := range g.Extra {
		copied[name] = v
	}
	tok, err := s.d.Token.Sign(ctx, tokensign.Request{
		Audience: g.Audience,
		Subject:  tokenSubject(c),
		Claims:   copied,
		Lifetime: lifetime,
		Now:      s.d.Now(),
	})
	if err != nil {
		// Signing is local: a failure is the broker's, not an upstream's.
		return nil, nil, &Error{Code: Unavailable, Description: "could not sign the token", RetryAfter: 5 * time.Second, Err: err}
	}
	return &Result{ExpiresAt: tok.ExpiresAt, Token: &Token{Token: tok.Token, ExpiresAt: tok.ExpiresAt}},
		&audit.Credential{Type: "token", ID: tok.ID, ExpiresAt: tok.ExpiresAt}, nil
}

// tokenSubject derives a stable subject from the CI identity rather than
// copying `sub`, whose template repository owners can customise.
func tokenSubject(c *claims.Set) string {
	if repo := c.Text("repository"); repo != "" {
		return "repo:" + repo + ":ref:" + c.Text("ref")
	}
	if p := c.Text("project_path"); p != "" {
		return "project_path:" + p + ":ref_type:" + c.Text("ref_type") + ":ref:" + c.Text("ref")
	}
	return c.Subject
}
