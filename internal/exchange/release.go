package exchange

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/replay"
)

// ReleaseGrace keeps a grant's release record past its credential's
// expiry, so a job that outlived its credential still hears "expired,
// nothing to end" (200) from its release step rather than a 403.
const ReleaseGrace = time.Hour

// releaseTokenBytes is the release token's randomness: 256 bits.
const releaseTokenBytes = 32

// Limits of a release request's fields: a request id is a 26-character
// ULID and a release token 43 characters; anything far longer is no
// release, and is refused before any lookup.
const (
	maxRequestIDLen    = 128
	maxReleaseTokenLen = 512
)

// Keys of the release state in the records store. The store hashes them.
const (
	grantKeyPrefix    = "release\x00grant\x00"
	releasedKeyPrefix = "release\x00done\x00"
)

// grantRecord is what release needs of one grant, kept in the records
// store (so every replica has it) until the credential expires, plus
// ReleaseGrace. It holds no secret: the release token only as its
// SHA-256, the kind's Release state which is non-secret by contract.
type grantRecord struct {
	TokenHash    string    `json:"token_sha256"`
	Policy       string    `json:"policy"`
	Kind         string    `json:"kind"`
	State        string    `json:"state,omitempty"`
	CredentialID string    `json:"credential_id,omitempty"`
	GrantedAt    time.Time `json:"granted_at"`
	// Granted is the lifetime granted, in whole seconds.
	Granted   int64         `json:"granted_seconds"`
	ExpiresAt time.Time     `json:"expires_at"`
	Issuer    string        `json:"issuer,omitempty"`
	Subject   string        `json:"subject,omitempty"`
	Claims    []claims.Pair `json:"claims,omitempty"`
}

func (g *grantRecord) keepUntil() time.Time { return g.ExpiresAt.Add(ReleaseGrace) }

// releaseOutcome is the released marker: Pending while the first release
// of a grant is under way, then what it did. A second release finds it and
// changes nothing.
type releaseOutcome struct {
	Pending     bool      `json:"pending,omitempty"`
	Revoked     bool      `json:"revoked"`
	Expired     bool      `json:"expired,omitempty"`
	Detail      string    `json:"detail,omitempty"`
	ReleasedAt  time.Time `json:"released_at"`
	HeldSeconds int64     `json:"held_seconds"`
}

// ReleaseRequest is one POST /v1/release.
type ReleaseRequest struct {
	// RequestID is the grant's request id, as its exchange answered.
	RequestID    string
	ReleaseToken string
	// Token is the credential itself, for kinds that must present it to
	// end it (github). A secret: never logged or kept.
	Token    string
	ClientIP string
}

// ReleaseResult is the contract's 200 answer to a release.
type ReleaseResult struct {
	RequestID string `json:"request_id"`
	Released  bool   `json:"released"`
	Revoked   bool   `json:"revoked"`
	Detail    string `json:"detail"`
}

// newReleaseToken returns a fresh release token and its hash.
func newReleaseToken() (token, hash string, err error) {
	b := make([]byte, releaseTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate release token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, hashReleaseToken(token), nil
}

func hashReleaseToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// keepForRelease stores what release will need of a grant and returns its
// release token. A store that cannot keep it refuses the grant: every
// answer carries a release token that works.
func (s *Service) keepForRelease(ctx context.Context, g madeGrant) (string, error) {
	token, data, until, err := g.record()
	if err != nil {
		return "", err
	}
	ok, err := s.d.Records.Put(ctx, grantKeyPrefix+g.requestID, data, until)
	if err == nil && !ok {
		err = replay.ErrRecordTaken
	}
	if err != nil {
		return "", grantNotKept(err)
	}
	return token, nil
}

// claimAndKeep claims the token's jti and keeps the grant's release record
// in one step of store, for a grant minted before its claim (grant.Local).
// It returns the release token, or the refusal a replayed token or a
// failing store gets.
func (s *Service) claimAndKeep(ctx context.Context, store replay.ClaimPutter, c jtiClaim, g madeGrant) (string, error) {
	token, data, until, err := g.record()
	if err != nil {
		return "", err
	}
	fresh, err := store.ClaimPut(ctx, c.key, c.expiry, grantKeyPrefix+g.requestID, data, until)
	switch {
	case err != nil && refusedRecord(err):
		return "", grantNotKept(err)
	case err != nil:
		return "", replayFailure(err, s.d.Now())
	case !fresh:
		return "", s.replayed(c)
	}
	return token, nil
}

// refusedRecord says a ClaimPut failed on the release record (its key
// taken, the records at their bound) and not on the claim, so that the
// refusal says which, as the two steps would.
func refusedRecord(err error) bool {
	var claimsFull *replay.FullError
	return !errors.As(err, &claimsFull) && (errors.Is(err, replay.ErrRecordTaken) || errors.Is(err, replay.ErrRecordsFull))
}

// madeGrant is a credential minted and not yet answered: what keeping it
// for release needs.
type madeGrant struct {
	requestID string
	rec       *audit.Record
	cred      *grant.Credential
	at        time.Time
	lifetime  time.Duration
}

// record is what release will need of the grant: its release token, the
// record that holds the token's hash, and how long to keep it.
func (m madeGrant) record() (token string, data []byte, until time.Time, err error) {
	token, hash, err := newReleaseToken()
	if err != nil {
		return "", nil, time.Time{}, &unavailable{reason: "the broker could not make a release token; no credential was issued", err: err}
	}
	rec, cred := m.rec, m.cred
	g := grantRecord{
		TokenHash: hash, Policy: rec.Policy, Kind: rec.Credential.Type, State: cred.Release, CredentialID: cred.ID,
		GrantedAt: m.at.UTC(), ExpiresAt: cred.ExpiresAt.UTC(), Granted: grantedSeconds(m.at, cred.ExpiresAt, m.lifetime),
		Issuer: rec.Issuer, Subject: rec.Subject, Claims: rec.Claims,
	}
	data, err = json.Marshal(g)
	if err != nil {
		return "", nil, time.Time{}, &unavailable{reason: "the broker could not record the grant for release; no credential was issued", err: err}
	}
	return token, data, g.keepUntil(), nil
}

func grantNotKept(err error) error {
	if errors.Is(err, replay.ErrRecordTaken) {
		err = errors.New("a grant with this request id is already recorded")
	}
	return &unavailable{reason: "the replay store could not record the grant for release; no credential was issued", err: err}
}

// grantedSeconds is the lifetime a grant got: the one the exchange asked
// for, unless the provider's expiry says otherwise (STS raises a request
// under 15 minutes to 15). The expiry alone is off by a second either way,
// since providers keep whole seconds and the clock moved during the call.
func grantedSeconds(mintedAt, expiresAt time.Time, asked time.Duration) int64 {
	actual := expiresAt.Sub(mintedAt)
	if d := actual - asked; d > -2*time.Second && d < 2*time.Second {
		return seconds(asked)
	}
	return seconds(actual)
}

// forgetGrant drops a grant's release record when its credential was
// withheld after all.
func (s *Service) forgetGrant(ctx context.Context, requestID string) {
	if err := s.d.Records.Delete(context.WithoutCancel(ctx), grantKeyPrefix+requestID); err != nil {
		s.d.Logger.WarnContext(ctx, "could not forget a withheld grant's release record", "request_id", requestID, "err", err)
	}
}

// Release ends a grant's credential early, through its kind's Releaser
// when it has one, and records the release. It is idempotent: a second
// release of the same grant answers as the first did and changes nothing.
// A refusal is an *Error, as classify makes it, and is audited too.
func (s *Service) Release(ctx context.Context, req ReleaseRequest) (*ReleaseResult, error) {
	rec := audit.Record{RequestID: req.RequestID, Decision: audit.Release, ClientIP: req.ClientIP}
	res, err := s.releaseGrant(ctx, req, &rec)
	if err != nil {
		return nil, s.refuseRelease(ctx, req, &rec, err)
	}
	if _, aerr := s.d.Audit.Write(ctx, rec); aerr != nil {
		// The credential is already ended; refusing now would only make
		// the job try again. The failure is the operator's to see.
		s.d.Logger.ErrorContext(ctx, "audit write failed for a release that took effect", "request_id", req.RequestID, "err", aerr)
	}
	s.d.Logger.InfoContext(ctx, "credential released", "request_id", req.RequestID, "policy", rec.Policy,
		"credential", rec.Credential.Type, "credential_id", rec.Credential.ID, "revoked", res.Revoked,
		"held_seconds", rec.Released.HeldSeconds, "repeat", rec.Released.Repeat)
	return res, nil
}

// RefuseRelease records a release refused before it reached Release (a
// body that does not parse) and returns the refusal as classify makes it.
func (s *Service) RefuseRelease(ctx context.Context, req ReleaseRequest, err error) *Error {
	if len(req.RequestID) > maxRequestIDLen {
		req.RequestID = "" // not an id: the audit line stays small
	}
	rec := audit.Record{RequestID: req.RequestID, Decision: audit.Release, ClientIP: req.ClientIP}
	return s.refuseRelease(ctx, req, &rec, err)
}

func (s *Service) refuseRelease(ctx context.Context, req ReleaseRequest, rec *audit.Record, err error) *Error {
	e := classify(err)
	rec.Error, rec.Reason, rec.Rule, rec.Released = string(e.Code), e.Description, e.Rule, nil
	s.logRelease(ctx, req, e)
	if _, aerr := s.d.Audit.Write(ctx, *rec); aerr != nil {
		s.d.Logger.ErrorContext(ctx, "audit write failed", "request_id", req.RequestID, "err", aerr)
	}
	return e
}

func (s *Service) logRelease(ctx context.Context, req ReleaseRequest, e *Error) {
	level := slog.LevelInfo
	if e.Code == UpstreamError || e.Code == Unavailable {
		level = slog.LevelError
	}
	attrs := []any{"request_id", req.RequestID, "error", string(e.Code), "reason", e.Description}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err)
	}
	s.d.Logger.Log(ctx, level, "release refused", attrs...)
}

func (s *Service) releaseGrant(ctx context.Context, req ReleaseRequest, rec *audit.Record) (*ReleaseResult, error) {
	if err := checkRelease(req); err != nil {
		return nil, err
	}
	g, err := s.lookupGrant(ctx, req.RequestID, req.ReleaseToken)
	if err != nil {
		return nil, err
	}
	rec.Policy, rec.Issuer, rec.Subject, rec.Claims = g.Policy, g.Issuer, g.Subject, g.Claims
	rec.Credential = &audit.Credential{Type: g.Kind, ID: g.CredentialID, ExpiresAt: g.ExpiresAt}
	granted := time.Duration(g.Granted) * time.Second
	res := &ReleaseResult{RequestID: req.RequestID, Released: true}

	now := s.d.Now()
	doneKey := releasedKeyPrefix + req.RequestID
	pending, _ := json.Marshal(releaseOutcome{Pending: true, ReleasedAt: now.UTC()})
	won, err := s.d.Records.Put(ctx, doneKey, pending, g.keepUntil())
	if err != nil {
		return nil, &unavailable{reason: "the replay store is unreachable; the credential was not released", err: err}
	}
	if !won {
		// Released before (here or on another replica): answer as then.
		out, err := s.outcome(ctx, doneKey)
		if err != nil {
			return nil, err
		}
		res.Revoked = out.Revoked
		res.Detail = "already released at " + out.ReleasedAt.Format(time.RFC3339) + ": " + out.Detail
		if out.Pending {
			res.Detail = "a release of this request is already under way"
		}
		rec.Released = &audit.Released{Revoked: out.Revoked, HeldSeconds: out.HeldSeconds, GrantedSeconds: seconds(granted),
			Expired: out.Expired, Repeat: true, Detail: res.Detail}
		return res, nil
	}

	out, err := s.endCredential(ctx, g, req.Token, now)
	if err != nil {
		// Nothing changed: let the job try again.
		if derr := s.d.Records.Delete(context.WithoutCancel(ctx), doneKey); derr != nil {
			s.d.Logger.WarnContext(ctx, "could not clear a failed release's marker", "request_id", req.RequestID, "err", derr)
		}
		return nil, err
	}
	out.ReleasedAt = now.UTC()
	out.HeldSeconds = seconds(min(now.Sub(g.GrantedAt), granted))
	if data, merr := json.Marshal(out); merr == nil {
		if _, rerr := s.d.Records.Replace(ctx, doneKey, data); rerr != nil {
			// A repeat release then reads "under way": harmless.
			s.d.Logger.WarnContext(ctx, "could not record a release's outcome", "request_id", req.RequestID, "err", rerr)
		}
	}
	res.Revoked, res.Detail = out.Revoked, out.Detail
	rec.Released = &audit.Released{Revoked: out.Revoked, HeldSeconds: out.HeldSeconds, GrantedSeconds: seconds(granted),
		Expired: out.Expired, Detail: out.Detail}
	return res, nil
}

func (s *Service) outcome(ctx context.Context, key string) (*releaseOutcome, error) {
	data, ok, err := s.d.Records.Get(ctx, key)
	if err != nil {
		return nil, &unavailable{reason: "the replay store is unreachable", err: err}
	}
	var out releaseOutcome
	if !ok || json.Unmarshal(data, &out) != nil {
		// Gone between two reads (it expired): as good as under way.
		out.Pending = true
	}
	return &out, nil
}

// endCredential does what the grant's kind does at release.
func (s *Service) endCredential(ctx context.Context, g *grantRecord, presented string, now time.Time) (releaseOutcome, error) {
	if !now.Before(g.ExpiresAt) {
		return releaseOutcome{Expired: true,
			Detail: fmt.Sprintf("the credential expired at %s; there was nothing left to end", g.ExpiresAt.Format(time.RFC3339))}, nil
	}
	expires := fmt.Sprintf("recorded; the %s credential cannot be ended early and expires by itself at %s", g.Kind, g.ExpiresAt.Format(time.RFC3339))
	if g.State == "" {
		return releaseOutcome{Detail: expires}, nil
	}
	releaser, ok := grant.As[grant.Releaser](s.d.Minters[g.Kind])
	if !ok {
		// The kind can end it, but not on this broker (no minter here).
		return releaseOutcome{}, &grant.UnavailableError{RetryAfter: time.Minute,
			Reason: fmt.Sprintf("this broker cannot end %s credentials (no %s minter configured); the credential was not released", g.Kind, g.Kind)}
	}
	rctx, cancel := context.WithTimeout(ctx, s.d.MintTimeout)
	defer cancel()
	r, err := releaser.Release(rctx, grant.ReleaseRequest{
		Policy: g.Policy, State: g.State, ExpiresAt: g.ExpiresAt, Presented: presented, Now: now,
		Shared: s.shared(g.Kind),
	})
	if err != nil {
		return releaseOutcome{}, err
	}
	if r.Detail == "" {
		r.Detail = expires
		if r.Revoked {
			r.Detail = "ended at the provider"
		}
	}
	return releaseOutcome{Revoked: r.Revoked, Detail: r.Detail}, nil
}

// endWithheld ends, where its kind can, a credential that was minted but
// is withheld from the caller because the audit log or the release store
// refused it, so that it does not live out its lifetime unseen. Best
// effort: it expires by itself either way.
func (s *Service) endWithheld(ctx context.Context, kind, policy string, cred *grant.Credential) {
	if cred == nil || cred.Release == "" {
		return
	}
	releaser, ok := grant.As[grant.Releaser](s.d.Minters[kind])
	if !ok {
		return
	}
	var presented string
	if cred.Bearer != nil {
		presented = cred.Bearer.Token // GitHub ends a token only when shown it
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.d.MintTimeout)
	defer cancel()
	_, err := releaser.Release(rctx, grant.ReleaseRequest{
		Policy: policy, State: cred.Release, ExpiresAt: cred.ExpiresAt, Presented: presented, Now: s.d.Now(),
		Shared: s.shared(kind),
	})
	if err != nil {
		s.d.Logger.WarnContext(ctx, "could not end a credential that was minted but withheld; it expires by itself",
			"policy", policy, "kind", kind, "credential_id", cred.ID, "expires_at", cred.ExpiresAt, "err", err)
	}
}

// dummyHash is compared against when no grant is found, so an unknown
// request id costs the same comparison as a wrong token.
var dummyHash = hashReleaseToken("no such grant")

// lookupGrant finds the grant and checks the release token against it in
// constant time. An unknown request and a wrong token are one refusal.
func (s *Service) lookupGrant(ctx context.Context, requestID, token string) (*grantRecord, error) {
	data, found, err := s.d.Records.Get(ctx, grantKeyPrefix+requestID)
	if err != nil {
		return nil, &unavailable{reason: "the replay store is unreachable; the credential was not released", err: err}
	}
	var g grantRecord
	if found && json.Unmarshal(data, &g) != nil {
		found = false
	}
	want := dummyHash
	if found {
		want = g.TokenHash
	}
	match := subtle.ConstantTimeCompare([]byte(hashReleaseToken(token)), []byte(want)) == 1
	if !found || !match {
		return nil, &releaseDenied{}
	}
	return &g, nil
}

// checkRelease refuses a release without the fields every release needs.
func checkRelease(req ReleaseRequest) error {
	switch {
	case req.RequestID == "":
		return badRequestf(`missing field "request_id"`)
	case req.ReleaseToken == "":
		return badRequestf(`missing field "release_token"`)
	case len(req.RequestID) > maxRequestIDLen:
		return badRequestf("request_id is longer than %d characters", maxRequestIDLen)
	case len(req.ReleaseToken) > maxReleaseTokenLen:
		return badRequestf("release_token is longer than %d characters", maxReleaseTokenLen)
	}
	return nil
}

func seconds(d time.Duration) int64 { return int64(max(d, 0).Round(time.Second) / time.Second) }
