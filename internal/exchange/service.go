// Package exchange performs one credential exchange: verify the CI token,
// authorize it against the trust policies, mint the credential the policy
// grants, and audit the decision. http.go serves it over the contract's
// HTTP API.
package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/replay"
	"github.com/ferry-broker/ferry/internal/trust"
)

// Verifier turns a raw CI token into a verified identity.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*identity.Identity, error)
}

// Policies returns the current policy set; it changes on reload.
type Policies interface {
	Current() *trust.Set
}

// Auditor records a decision.
type Auditor interface {
	Write(ctx context.Context, r audit.Record) (audit.Record, error)
}

// AWSMinter mints AWS STS session credentials.
type AWSMinter interface {
	AssumeRole(ctx context.Context, req awssts.Request) (*awssts.Credentials, error)
}

// GCPMinter mints GCP service-account access tokens.
type GCPMinter interface {
	GenerateAccessToken(ctx context.Context, req gcpiam.Request) (*gcpiam.Token, error)
}

// TokenSigner mints Ferry-signed JWTs.
type TokenSigner interface {
	Sign(ctx context.Context, req tokensign.Request) (*tokensign.Token, error)
}

// Deps are what a Service needs. AWS, GCP and Token may be nil: requests for
// that grant type are then refused as unavailable on this broker.
type Deps struct {
	Verifier Verifier
	Policies Policies
	Replay   replay.Store
	Audit    Auditor
	AWS      AWSMinter
	GCP      GCPMinter
	Token    TokenSigner
	Logger   *slog.Logger
	Metrics  *Metrics
	// Now is the clock; tests set it.
	Now func() time.Time
	// MintTimeout bounds one call to a cloud provider; default 15s.
	MintTimeout time.Duration
	// ReplayLeeway keeps a used jti past the token's exp by the verifier's
	// clock-skew allowance, so a token accepted late cannot be replayed.
	ReplayLeeway time.Duration
}

// Service performs exchanges. It is safe for concurrent use.
type Service struct {
	d Deps
}

// New returns a Service.
func New(d Deps) (*Service, error) {
	if d.Verifier == nil || d.Policies == nil || d.Replay == nil || d.Audit == nil {
		return nil, errors.New("exchange: verifier, policies, replay store and audit log are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MintTimeout == 0 {
		d.MintTimeout = 15 * time.Second
	}
	if d.ReplayLeeway == 0 {
		d.ReplayLeeway = 60 * time.Second
	}
	return &Service{d: d}, nil
}

// Request is one exchange.
type Request struct {
	Policy string
	Token  string
	// Duration asked for; 0 means the policy's maximum.
	Duration time.Duration
	// GrantTypes, when set, limits which grant types may answer (RFC 8693
	// serves token and gcp grants only).
	GrantTypes []string
	ClientIP   string
	RequestID  string
}

// Result is a minted credential. It holds secrets: it goes to the caller
// and nowhere else.
type Result struct {
	Policy    string    `json:"policy"`
	RequestID string    `json:"request_id"`
	ExpiresAt time.Time `json:"expires_at"`
	AWS       *AWS      `json:"aws,omitempty"`
	GCP       *GCP      `json:"gcp,omitempty"`
	Token     *Token    `json:"token,omitempty"`
}

// AWS is the contract's aws object.
type AWS struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token"`
	Expiration      time.Time `json:"expiration"`
	RoleARN         string    `json:"role_arn"`
	AssumedRoleARN  string    `json:"assumed_role_arn,omitempty"`
}

// GCP is the contract's gcp object.
type GCP struct {
	AccessToken    string    `json:"access_token"`
	ExpiresAt      time.Time `json:"expires_at"`
	ServiceAccount string    `json:"service_account"`
}

// Token is the contract's token object.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// NewRequestID returns a sortable, unique request id.
func NewRequestID() string { return ulid.Make().String() }

// Exchange runs one exchange and records the decision, allow or deny.
func (s *Service) Exchange(ctx context.Context, req Request) (*Result, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	start := s.d.Now()
	rec := audit.Record{RequestID: req.RequestID, Policy: req.Policy, ClientIP: req.ClientIP}
	res, replayKey, err := s.exchange(ctx, req, &rec)
	if err != nil {
		return nil, s.deny(ctx, req, &rec, start, err)
	}
	rec.Decision = audit.Allow
	if _, aerr := s.d.Audit.Write(ctx, rec); aerr != nil {
		// Every grant is recorded or not made: the credential is already
		// minted, but it self-expires and the caller never sees it, so the
		// job may try again with the same token once the log recovers.
		s.d.Logger.ErrorContext(ctx, "audit write failed; withholding credential", "request_id", req.RequestID, "err", aerr)
		s.release(ctx, req, replayKey)
		s.d.Metrics.observe(rec.Policy, audit.Deny, string(Unavailable), s.d.Now().Sub(start))
		return nil, &Error{Code: Unavailable, Description: "the broker could not record the decision; no credential was issued", RetryAfter: 5 * time.Second, Err: aerr}
	}
	s.d.Logger.InfoContext(ctx, "exchange allowed", "request_id", req.RequestID, "policy", rec.Policy,
		"issuer", rec.Issuer, "subject", rec.Subject, "credential", rec.Credential.Type, "credential_id", rec.Credential.ID,
		"expires_at", rec.Credential.ExpiresAt)
	s.d.Metrics.observe(rec.Policy, audit.Allow, "", s.d.Now().Sub(start))
	return res, nil
}

// Refuse records a request refused before it reached Exchange (a body that
// does not parse, say) and returns err unchanged for the caller to answer.
func (s *Service) Refuse(ctx context.Context, req Request, err error) error {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	rec := audit.Record{RequestID: req.RequestID, Policy: req.Policy, ClientIP: req.ClientIP}
	_ = s.deny(ctx, req, &rec, s.d.Now(), err)
	return err
}

func (s *Service) deny(ctx context.Context, req Request, rec *audit.Record, start time.Time, err error) *Error {
	e := AsError(err)
	// The refusal's own rule, never the "match" an authorization that was
	// then refused for another reason (replay, upstream) recorded.
	rec.Decision, rec.Error, rec.Reason, rec.Rule = audit.Deny, string(e.Code), e.Description, e.Rule
	s.log(ctx, req, e)
	if _, aerr := s.d.Audit.Write(ctx, *rec); aerr != nil {
		s.d.Logger.ErrorContext(ctx, "audit write failed", "request_id", req.RequestID, "err", aerr)
	}
	s.d.Metrics.observe(rec.Policy, audit.Deny, string(e.Code), s.d.Now().Sub(start))
	return e
}

func (s *Service) log(ctx context.Context, req Request, e *Error) {
	level := slog.LevelInfo // a refusal is the broker working
	if e.Code == UpstreamError || e.Code == Unavailable {
		level = slog.LevelError
	}
	attrs := []any{"request_id", req.RequestID, "policy", req.Policy, "error", string(e.Code), "reason", e.Description}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err)
	}
	s.d.Logger.Log(ctx, level, "exchange refused", attrs...)
}

// exchange decides and mints. It returns the replay key it claimed, for
// Exchange to release should the grant not be recorded.
func (s *Service) exchange(ctx context.Context, req Request, rec *audit.Record) (*Result, string, error) {
	if req.Policy == "" {
		return nil, "", errorf(InvalidRequest, `missing field "policy"`)
	}
	if req.Token == "" {
		return nil, "", errorf(InvalidRequest, `missing field "token" (or an Authorization: Bearer header)`)
	}
	if req.Duration < 0 {
		return nil, "", errorf(InvalidRequest, "duration must be positive")
	}

	id, err := s.d.Verifier.Verify(ctx, req.Token)
	if err != nil {
		return nil, "", verifyError(err)
	}
	fillIdentity(rec, id)

	set := s.d.Policies.Current()
	if set == nil {
		return nil, "", &Error{Code: Unavailable, Description: "no trust policies are loaded", RetryAfter: 5 * time.Second}
	}
	// An endpoint that cannot serve the policy's grant says so before the
	// claims are weighed: the caller is at the wrong door either way.
	if len(req.GrantTypes) > 0 {
		if p, ok := set.Lookup(req.Policy); ok && !slices.Contains(req.GrantTypes, p.Grant.Type()) {
			return nil, "", &Error{Code: InvalidRequest, Rule: "grant_type",
				Description: fmt.Sprintf("policy %q grants %s credentials, which this endpoint does not serve; use POST /v1/exchange", p.Name, p.Grant.Type())}
		}
	}
	dec := set.Authorize(id.Issuer, req.Policy, id.Claims)
	rec.Rule = dec.Rule
	if !dec.Allowed {
		return nil, "", &Error{Code: AccessDenied, Description: dec.Reason, Rule: dec.Rule}
	}
	pol := dec.Policy
	grant, err := pol.Render(id.Claims)
	if err != nil {
		return nil, "", &Error{Code: AccessDenied, Description: err.Error(), Rule: "grant"}
	}
	lifetime, err := clampDuration(pol.Name, req.Duration, grant.MaxDuration())
	if err != nil {
		return nil, "", err
	}

	// Single use: claimed only once the request is otherwise good, so a
	// refused attempt does not burn the job's token.
	key := id.Issuer + "\x00" + pol.Name + "\x00" + id.Claims.ID
	fresh, err := s.d.Replay.Claim(ctx, key, id.Claims.Expiry.Add(s.d.ReplayLeeway))
	if err != nil {
		return nil, "", &Error{Code: Unavailable, Description: "the replay store is unreachable; refusing rather than risking a replay", RetryAfter: 5 * time.Second, Err: err}
	}
	if !fresh {
		return nil, "", &Error{Code: InvalidToken, Rule: "replay",
			Description: fmt.Sprintf("token jti %s was already used for policy %q; request a fresh token", claims.Describe(id.Claims.ID), pol.Name)}
	}

	mctx, cancel := context.WithTimeout(ctx, s.d.MintTimeout)
	defer cancel()
	res, cred, err := s.mint(mctx, pol.Name, grant, lifetime, id)
	if err != nil {
		// Nothing was issued: let the job try again with the same token,
		// which matters on GitLab where a job has only the one.
		s.release(ctx, req, key)
		return nil, "", err
	}
	res.Policy, res.RequestID = pol.Name, req.RequestID
	rec.Credential = cred
	return res, key, nil
}

// release gives a token id back after a request that issued nothing.
func (s *Service) release(ctx context.Context, req Request, key string) {
	if err := s.d.Replay.Release(context.WithoutCancel(ctx), key); err != nil {
		s.d.Logger.WarnContext(ctx, "replay release failed", "request_id", req.RequestID, "err", err)
	}
}

// clampDuration applies the contract: a request may ask for less than the
// policy's duration, never more; no request means the policy's duration.
func clampDuration(policy string, asked, max time.Duration) (time.Duration, error) {
	if asked == 0 {
		return max, nil
	}
	if asked > max {
		return 0, errorf(InvalidRequest, "duration %s is longer than policy %q allows (%s)", asked, policy, max)
	}
	if asked < time.Minute {
		return 0, errorf(InvalidRequest, "duration %s is shorter than the minimum of 1m", asked)
	}
	return asked, nil
}

func verifyError(err error) error {
	var te *identity.TokenError
	if errors.As(err, &te) {
		return &Error{Code: InvalidToken, Description: te.Reason, Err: err}
	}
	var ue *identity.UnavailableError
	if errors.As(err, &ue) {
		return &Error{Code: Unavailable, RetryAfter: ue.RetryAfter, Err: err,
			Description: fmt.Sprintf("cannot fetch the signing keys of issuer %q; try again", ue.Issuer)}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: Unavailable, Description: "request cancelled", RetryAfter: time.Second, Err: err}
	}
	return &Error{Code: InvalidToken, Description: "token could not be verified", Err: err}
}

// identifying claims copied into the audit record.
func fillIdentity(rec *audit.Record, id *identity.Identity) {
	c := id.Claims
	rec.Issuer = id.Issuer
	rec.Subject = c.Subject
	rec.Repository = c.Text("repository")
	rec.RepositoryID = c.Text("repository_id")
	rec.Ref = c.Text("ref")
	rec.Environment = c.Text("environment")
	rec.EventName = c.Text("event_name")
	rec.RunID = c.Text("run_id")
	rec.Actor = c.Text("actor")
	rec.JobWorkflowRef = c.Text("job_workflow_ref")
	rec.ProjectPath = c.Text("project_path")
	rec.ProjectID = c.Text("project_id")
	rec.PipelineID = c.Text("pipeline_id")
	rec.JobID = c.Text("job_id")
	rec.PipelineSource = c.Text("pipeline_source")
	rec.UserLogin = c.Text("user_login")
}
