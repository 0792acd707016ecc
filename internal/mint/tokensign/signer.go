package tokensign

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/oklog/ulid/v2"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/urlcheck"
)

// MaxLifetime bounds a signed token's life whatever the caller asks: a
// safety net under the policy limits, which are far shorter.
const MaxLifetime = 12 * time.Hour

// registeredClaims are set by the signer itself; Request.Claims may not
// carry them, or a policy could make a token claim another issuer, subject,
// audience or lifetime.
func registeredClaims() []string {
	return []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}
}

// IsRegisteredClaim reports whether name is a claim the signer sets itself
// (iss, sub, aud, exp, nbf, iat, jti), so policy loading can refuse it.
func IsRegisteredClaim(name string) bool {
	return slices.Contains(registeredClaims(), name)
}

// Signer signs Ferry tokens with its active key and publishes the active and
// previous keys. It is safe for concurrent use.
type Signer struct {
	issuer    string
	active    *Key
	signer    jose.Signer
	jwks      jose.JSONWebKeySet
	jwksJSON  []byte
	discovery []byte
}

// NewSigner signs as issuer with active. Tokens signed by previous keys keep
// verifying, because the keys stay in the JWKS: rotate by making the new key
// active and the old one previous for at least the longest token lifetime,
// then dropping it.
func NewSigner(issuer string, active *Key, previous ...*Key) (*Signer, error) {
	if err := validateIssuer(issuer); err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	if active == nil || active.Signer == nil {
		return nil, fmt.Errorf("token signer: no active key")
	}
	keys := append([]*Key{active}, previous...)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	var algs []string
	for i, k := range keys {
		if k == nil || k.Signer == nil {
			return nil, fmt.Errorf("token signer: previous key %d is missing", i)
		}
		// Recompute rather than trust the fields: a hand-built Key with a
		// wrong kid or alg would publish a JWKS that verifies nothing.
		checked, err := NewKey(k.Signer)
		if err != nil {
			return nil, fmt.Errorf("token signer: key %s: %w", k.ID, err)
		}
		if checked.ID != k.ID || checked.Alg != k.Alg {
			return nil, fmt.Errorf("token signer: key %q does not match its private key (want kid %s, alg %s)", k.ID, checked.ID, checked.Alg)
		}
		for _, seen := range set.Keys {
			if seen.KeyID == k.ID {
				return nil, fmt.Errorf("token signer: key %s is given twice", k.ID)
			}
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
		if !slices.Contains(algs, string(k.Alg)) {
			algs = append(algs, string(k.Alg))
		}
	}

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: active.Alg, Key: jose.JSONWebKey{Key: active.Signer, KeyID: active.ID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	jwksJSON, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("token signer: marshal JWKS: %w", err)
	}
	discovery, err := json.Marshal(struct {
		Issuer          string   `json:"issuer"`
		JWKSURI         string   `json:"jwks_uri"`
		Algs            []string `json:"id_token_signing_alg_values_supported"`
		ResponseTypes   []string `json:"response_types_supported"`
		SubjectTypes    []string `json:"subject_types_supported"`
		ClaimsSupported []string `json:"claims_supported"`
	}{
		Issuer:          issuer,
		JWKSURI:         strings.TrimSuffix(issuer, "/") + "/.well-known/jwks.json",
		Algs:            algs,
		ResponseTypes:   []string{"id_token"},
		SubjectTypes:    []string{"public"},
		ClaimsSupported: registeredClaims(),
	})
	if err != nil {
		return nil, fmt.Errorf("token signer: marshal discovery document: %w", err)
	}
	return &Signer{issuer: issuer, active: active, signer: signer, jwks: set, jwksJSON: jwksJSON, discovery: discovery}, nil
}

// validateIssuer accepts what relying parties can discover: an https URL
// without query or fragment, or plain http on a loopback host for local
// demos and tests.
func validateIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer %q is not a URL: %w", issuer, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(issuer, "?") || strings.HasSuffix(issuer, "#") {
		return fmt.Errorf("issuer %q must be a URL like https://ferry.example.com, without user, query or fragment", issuer)
	}
	if !urlcheck.Secure(u) {
		return fmt.Errorf("issuer %q must use https (plain http is allowed on localhost only)", issuer)
	}
	return nil
}

// SigningKey is the active key, for what else the broker signs with the
// key it publishes (its audit checkpoints).
func (s *Signer) SigningKey() (key crypto.Signer, kid, alg string) {
	return s.active.Signer, s.active.ID, string(s.active.Alg)
}

// Issuer is the iss of every token and the discovery document.
func (s *Signer) Issuer() string { return s.issuer }

// JWKS returns the public keys that verify this signer's tokens, active
// first.
func (s *Signer) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: slices.Clone(s.jwks.Keys)}
}

// JWKSJSON is JWKS marshalled, for GET /.well-known/jwks.json. The caller
// must not modify it.
func (s *Signer) JWKSJSON() []byte { return s.jwksJSON }

// DiscoveryJSON is the OpenID configuration for GET
// /.well-known/openid-configuration. The caller must not modify it.
func (s *Signer) DiscoveryJSON() []byte { return s.discovery }

// Request is one token to sign.
type Request struct {
	// Audience is the aud: the service the token is for.
	Audience string
	// Subject is the sub, e.g. "repo:acme/app:ref:refs/heads/main".
	Subject string
	// Claims are copied into the token as strings. Registered claim names
	// (see IsRegisteredClaim) are refused.
	Claims map[string]string
	// Lifetime is exp - iat; positive and at most MaxLifetime.
	Lifetime time.Duration
	// Now is the issue time; zero means the current time.
	Now time.Time
}

// Token is a signed token. Token is a bearer credential: never log it.
type Token struct {
	Token     string
	ID        string // jti, unique per token; safe to log and audit
	ExpiresAt time.Time
}

// badGrant says why a Request cannot be signed; nothing was signed.
func badGrant(field, reason string) *grant.BadGrantError {
	return &grant.BadGrantError{Kind: KindName, Field: field, Reason: reason}
}

// Sign issues a token with iss, sub, aud, iat, nbf (= iat), exp and a unique
// jti (a ULID: sortable by issue time, 80 random bits from crypto/rand),
// signed by the active key with kid and typ "JWT" in the header.
func (s *Signer) Sign(ctx context.Context, req Request) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign token: %w", err)
	}
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	// JWT times are whole seconds; truncating here makes ExpiresAt equal to
	// the exp a verifier sees.
	now = now.UTC().Truncate(time.Second)
	exp := now.Add(req.Lifetime)
	id, err := ulid.New(ulid.Timestamp(now), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sign token: generate jti: %w", err)
	}
	// The claims are marshalled once, straight into the payload: go-jose's
	// jwt builder marshals and re-parses each set of claims to merge them,
	// a sixth of the cost of signing (BenchmarkSign). Keys come out
	// sorted, and aud is one string, as the builder wrote them.
	payload := make(map[string]any, len(req.Claims)+7) // the registered claims, and the copied
	for name, v := range req.Claims {
		payload[name] = v
	}
	payload["iss"], payload["sub"], payload["aud"] = s.issuer, req.Subject, req.Audience
	payload["iat"], payload["nbf"], payload["exp"] = now.Unix(), now.Unix(), exp.Unix()
	payload["jti"] = id.String()
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("sign token: marshal claims: %w", err)
	}
	jws, err := s.signer.Sign(body)
	if err != nil {
		return nil, fmt.Errorf("sign token with key %s: %w", s.active.ID, err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("sign token with key %s: %w", s.active.ID, err)
	}
	return &Token{Token: raw, ID: id.String(), ExpiresAt: exp}, nil
}

func validateRequest(req Request) error {
	if req.Audience == "" {
		return badGrant("audience", "is empty")
	}
	if req.Subject == "" {
		return badGrant("subject", "is empty")
	}
	if req.Lifetime <= 0 || req.Lifetime > MaxLifetime {
		return badGrant("lifetime", fmt.Sprintf("%s is outside (0, %s]", req.Lifetime, MaxLifetime))
	}
	for name := range req.Claims {
		if name == "" {
			return badGrant("claims", "a claim has an empty name")
		}
		// JSON would silently replace invalid UTF-8; a claim must arrive
		// exactly as the policy meant it or not at all.
		if !utf8.ValidString(name) || !utf8.ValidString(req.Claims[name]) {
			return badGrant("claims", fmt.Sprintf("claim %q is not valid UTF-8", name))
		}
		if IsRegisteredClaim(name) {
			return badGrant("claims", fmt.Sprintf("%q is set by Ferry itself and cannot be copied in", name))
		}
	}
	return nil
}
