// Package exchange performs one credential exchange: verify the CI token,
// decide it against the trust policies, mint the credential the policy
// grants through its grant kind, and audit the decision. http.go serves it
// over the contract's HTTP API, rfc8693.go as an RFC 8693 token endpoint.
package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/platform"
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

// Deps are what a Service needs.
type Deps struct {
	Verifier Verifier
	Policies Policies
	Replay   replay.Store
	// Records keep what release needs of each grant, and the kinds'
	// shared state; nil takes Replay's, which both stores implement.
	Records replay.Records
	Audit   Auditor
	// Kinds are the grant kinds policies may use, and Minters their
	// minters by kind name. A policy whose kind has no minter here is
	// refused as unavailable on this broker.
	Kinds   grant.Kinds
	Minters map[string]grant.Minter
	// Platforms name a token's job and pick its identifying claims.
	Platforms platform.Set
	// Limits are the per-repository and per-policy rate limits; the zero
	// value has none.
	Limits  Limits
	Logger  *slog.Logger
	Metrics *Metrics
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
	// claimPut is the replay store when it keeps the records too and can
	// claim and keep in one step; nil otherwise.
	claimPut replay.ClaimPutter
}

// New returns a Service.
func New(d Deps) (*Service, error) {
	if d.Verifier == nil || d.Policies == nil || d.Replay == nil || d.Audit == nil || len(d.Platforms) == 0 {
		return nil, errors.New("exchange: verifier, policies, replay store, audit log and platforms are required")
	}
	if d.Records == nil {
		r, ok := d.Replay.(replay.Records)
		if !ok {
			return nil, errors.New("exchange: the replay store keeps no records; release needs them (set Deps.Records)")
		}
		d.Records = r
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
	s := &Service{d: d}
	if cp, ok := d.Replay.(replay.ClaimPutter); ok && replay.Records(cp) == d.Records {
		s.claimPut = cp
	}
	return s, nil
}

// Request is one exchange.
type Request struct {
	Policy string
	Token  string
	// Duration asked for; 0 means the policy's maximum.
	Duration time.Duration
	// TokenType, with BearerOnly, is the RFC 8693 token type asked for; ""
	// takes the kind's own.
	TokenType string
	// BearerOnly limits the exchange to kinds whose credential is a bearer
	// token (RFC 8693's /v1/token).
	BearerOnly bool
	ClientIP   string
	RequestID  string
}

// Result is a minted credential. It holds secrets: it goes to the caller
// and nowhere else.
type Result struct {
	Policy     string
	RequestID  string
	ExpiresAt  time.Time
	Kind       string
	Credential *grant.Credential
	// ReleaseToken ends the credential early (POST /v1/release).
	ReleaseToken string
}

// MarshalJSON writes the contract's answer: the credential's object under
// its kind's name.
func (r *Result) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(struct {
		Policy       string    `json:"policy"`
		RequestID    string    `json:"request_id"`
		ExpiresAt    time.Time `json:"expires_at"`
		ReleaseToken string    `json:"release_token,omitempty"`
	}{r.Policy, r.RequestID, r.ExpiresAt, r.ReleaseToken})
	if err != nil {
		return nil, err
	}
	answer, err := json.Marshal(r.Credential.Answer)
	if err != nil {
		return nil, fmt.Errorf("encode %s credential: %w", r.Kind, err)
	}
	key, _ := json.Marshal(r.Kind)
	out := make([]byte, 0, len(head)+len(key)+len(answer)+2)
	out = append(out, head[:len(head)-1]...)
	out = append(out, ',')
	out = append(out, key...)
	out = append(out, ':')
	out = append(out, answer...)
	return append(out, '}'), nil
}

// NewRequestID returns a sortable, unique request id.
func NewRequestID() string { return ulid.Make().String() }

// Exchange runs one exchange and records the decision, allow or deny. A
// refusal is an *Error, as classify makes it.
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
	auditStart := s.d.Now()
	_, aerr := s.d.Audit.Write(ctx, rec)
	s.d.Metrics.stage(stageAudit, auditStart, s.d.Now())
	if aerr != nil {
		// Every grant is recorded or not made: the credential is already
		// minted, but it self-expires and the caller never sees it, so the
		// job may try again with the same token once the log recovers.
		s.d.Logger.ErrorContext(ctx, "audit write failed; withholding credential", "request_id", req.RequestID, "err", aerr)
		s.release(ctx, req, replayKey)
		s.forgetGrant(ctx, req.RequestID)
		s.endWithheld(ctx, res.Kind, res.Policy, res.Credential)
		e := classify(&unavailable{reason: "the broker could not record the decision; no credential was issued", err: aerr})
		s.d.Metrics.observe(rec.Policy, audit.Deny, string(e.Code), s.d.Now().Sub(start))
		return nil, e
	}
	// Every decision is in the audit log already; the operational log
	// repeats it only when asked (log_level: debug), which saves a write
	// to stderr per request on the hot path.
	if s.d.Logger.Enabled(ctx, slog.LevelDebug) {
		s.d.Logger.DebugContext(ctx, "exchange allowed", "request_id", req.RequestID, "policy", rec.Policy,
			"issuer", rec.Issuer, "subject", rec.Subject, "credential", rec.Credential.Type, "credential_id", rec.Credential.ID,
			"expires_at", rec.Credential.ExpiresAt)
	}
	s.d.Metrics.observe(rec.Policy, audit.Allow, "", s.d.Now().Sub(start))
	return res, nil
}

// Refuse records a request refused before it reached Exchange (a body that
// does not parse, say) and returns the refusal as classify makes it.
func (s *Service) Refuse(ctx context.Context, req Request, err error) *Error {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	rec := audit.Record{RequestID: req.RequestID, Policy: req.Policy, ClientIP: req.ClientIP}
	return s.deny(ctx, req, &rec, s.d.Now(), err)
}

func (s *Service) deny(ctx context.Context, req Request, rec *audit.Record, start time.Time, err error) *Error {
	e := classify(err)
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
	// A refusal is the broker working, and the audit log has it: the
	// operational log repeats it at debug. What an operator must act on
	// (a provider failing, the broker unable to decide) is an error.
	level := slog.LevelDebug
	if e.Code == UpstreamError || e.Code == Unavailable {
		level = slog.LevelError
	}
	if !s.d.Logger.Enabled(ctx, level) {
		return
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
	if err := checkRequest(req.Policy, req.Token); err != nil {
		return nil, "", err
	}
	if req.Duration < 0 {
		return nil, "", badRequestf("duration must be positive")
	}

	t := s.d.Now() // each stage's start, for its metric
	id, err := s.verify(ctx, req.Token)
	t = s.d.Metrics.stage(stageVerify, t, s.d.Now())
	if err != nil {
		return nil, "", err
	}
	rec.Issuer, rec.Subject = id.Issuer, id.Claims.Subject
	rec.Claims = s.d.Platforms.Identify(id.Claims)

	set := s.d.Policies.Current()
	if set == nil {
		return nil, "", &unavailable{reason: "no trust policies are loaded"}
	}
	// An endpoint that cannot serve the policy's kind says so before the
	// claims are weighed: the caller is at the wrong door either way.
	if req.BearerOnly {
		if p, ok := set.Lookup(req.Policy); ok {
			if err := s.servesBearer(p, req.TokenType); err != nil {
				return nil, "", err
			}
		}
	}
	dec := set.Decide(id.Issuer, req.Policy, id.Claims)
	t = s.d.Metrics.stage(stageDecide, t, s.d.Now())
	rec.Rule = dec.Rule
	if !dec.Allowed {
		return nil, "", &denied{rule: dec.Rule, reason: dec.Reason}
	}
	pol, spec := dec.Policy, dec.Grant
	lifetime, err := clampDuration(pol.Name, spec, req.Duration)
	if err != nil {
		return nil, "", err
	}
	minter := s.d.Minters[spec.Kind()]
	if minter == nil {
		return nil, "", &grant.UnavailableError{RetryAfter: time.Minute,
			Reason: fmt.Sprintf("policy %q grants %s credentials, but this broker has no %s minter configured", pol.Name, spec.Kind(), spec.Kind())}
	}

	err = s.limit(ctx, id.Issuer, pol.Name, id.Claims)
	t = s.d.Metrics.stage(stageLimit, t, s.d.Now())
	if err != nil {
		return nil, "", err
	}

	// Single use: claimed only once the request is otherwise good, so a
	// refused attempt does not burn the job's token. A grant made inside
	// the broker is minted first and claimed together with its release
	// record, one step to the store; any other is claimed before the
	// provider is called, so that a replayed token never reaches it.
	c := jtiClaim{key: id.Issuer + "\x00" + pol.Name + "\x00" + id.Claims.ID, jti: id.Claims.ID, policy: pol.Name,
		expiry: id.Claims.Expiry.Add(s.d.ReplayLeeway)}
	together := s.claimPut != nil && !req.BearerOnly && isLocal(minter)
	if !together {
		err = s.claim(ctx, c)
		t = s.d.Metrics.stage(stageReplay, t, s.d.Now())
		if err != nil {
			return nil, "", err
		}
	}

	mctx, cancel := context.WithTimeout(ctx, s.d.MintTimeout)
	defer cancel()
	mintedAt := s.d.Now()
	cred, err := minter.Mint(mctx, grant.Request{
		Policy: pol.Name, Spec: spec, Lifetime: lifetime, Claims: id.Claims,
		Job: s.d.Platforms.Job(id.Claims), RequestID: req.RequestID, Now: mintedAt,
	})
	t = s.d.Metrics.stage(stageMint, t, s.d.Now())
	if err != nil {
		if !together {
			// Nothing was issued: let the job try again with the same
			// token, which matters on GitLab where a job has only the one.
			s.release(ctx, req, c.key)
		}
		return nil, "", err
	}
	rec.Credential = &audit.Credential{Type: spec.Kind(), ID: cred.ID, ExpiresAt: cred.ExpiresAt, Scope: cred.Scope}
	made := madeGrant{requestID: req.RequestID, rec: rec, cred: cred, at: mintedAt, lifetime: lifetime}
	var releaseToken string
	switch {
	case together:
		releaseToken, err = s.claimAndKeep(ctx, s.claimPut, c, made)
		s.d.Metrics.stage(stageReplay, t, s.d.Now())
		if err != nil {
			// The credential never left the broker: nothing was issued,
			// and the refusal's record names none.
			rec.Credential = nil
			return nil, "", err
		}
	case !req.BearerOnly: // RFC 8693's answer has no place for a release token
		if releaseToken, err = s.keepForRelease(ctx, made); err != nil {
			s.release(ctx, req, c.key)
			s.endWithheld(ctx, spec.Kind(), pol.Name, cred)
			return nil, "", err
		}
	}
	return &Result{Policy: pol.Name, RequestID: req.RequestID, ExpiresAt: cred.ExpiresAt, Kind: spec.Kind(), Credential: cred,
		ReleaseToken: releaseToken}, c.key, nil
}

// jtiClaim is a token's single use for a policy: its replay key, kept
// until expiry.
type jtiClaim struct {
	key, jti, policy string
	expiry           time.Time
}

// claim makes the token's jti used for the policy, or refuses a token
// whose jti already is.
func (s *Service) claim(ctx context.Context, c jtiClaim) error {
	fresh, err := s.d.Replay.Claim(ctx, c.key, c.expiry)
	if err != nil {
		return replayFailure(err, s.d.Now())
	}
	if !fresh {
		return s.replayed(c)
	}
	return nil
}

func (s *Service) replayed(c jtiClaim) error {
	s.d.Metrics.replayHit()
	return &replayed{reason: fmt.Sprintf("token jti %s was already used for policy %q; request a fresh token", claims.Describe(c.jti), c.policy)}
}

// isLocal says whether minter's kind mints inside the broker (grant.Local).
func isLocal(minter grant.Minter) bool {
	_, ok := grant.As[grant.Local](minter)
	return ok
}

// verify checks the token. A failure the verifier did not type is the
// token's: it could not be verified.
func (s *Service) verify(ctx context.Context, raw string) (*identity.Identity, error) {
	id, err := s.d.Verifier.Verify(ctx, raw)
	if err == nil {
		return id, nil
	}
	var te *identity.TokenError
	var ue *identity.UnavailableError
	if errors.As(err, &te) || errors.As(err, &ue) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	return nil, &identity.TokenError{Reason: "token could not be verified", Err: err}
}

// servesBearer refuses a policy whose kind issues no bearer token, or one
// of another type than asked for.
func (s *Service) servesBearer(p *trust.Policy, want string) error {
	kind := p.Grant.Kind()
	k, _ := s.d.Kinds.Lookup(kind)
	b, ok := k.(grant.BearerKind)
	switch {
	case !ok:
		return &wrongEndpoint{reason: fmt.Sprintf("policy %q grants %s credentials, which this endpoint does not serve; use POST /v1/exchange", p.Name, kind)}
	case want != "" && want != b.BearerTokenType():
		return &badRequest{reason: fmt.Sprintf("policy %q grants %s credentials, issued as %s, not the requested_token_type %s", p.Name, kind, b.BearerTokenType(), want)}
	}
	return nil
}

// release gives a token id back after a request that issued nothing.
func (s *Service) release(ctx context.Context, req Request, key string) {
	if err := s.d.Replay.Release(context.WithoutCancel(ctx), key); err != nil {
		s.d.Logger.WarnContext(ctx, "replay release failed", "request_id", req.RequestID, "err", err)
	}
}

// checkRequest refuses a request without the fields every exchange needs,
// whichever endpoint it came through.
func checkRequest(policy, token string) error {
	if policy == "" {
		return badRequestf(`missing field "policy"`)
	}
	if token == "" {
		return badRequestf(`missing field "token" (or an Authorization: Bearer header)`)
	}
	return nil
}

// clampDuration applies the contract: a request may ask for less than the
// policy's duration, never more; no request means the policy's duration.
// A kind whose provider fixes the lifetime takes no request at all.
func clampDuration(policy string, spec grant.Spec, asked time.Duration) (time.Duration, error) {
	max := spec.MaxDuration()
	if asked == 0 {
		return max, nil
	}
	if f, ok := spec.(grant.FixedLifetime); ok && f.FixedLifetime() {
		return 0, badRequestf("policy %q grants %s credentials, whose lifetime the provider fixes; leave duration out", policy, spec.Kind())
	}
	if asked > max {
		return 0, badRequestf("duration %s is longer than policy %q allows (%s)", asked, policy, max)
	}
	if asked < time.Minute {
		return 0, badRequestf("duration %s is shorter than the minimum of 1m", asked)
	}
	return asked, nil
}
