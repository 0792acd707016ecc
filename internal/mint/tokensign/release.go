package tokensign

import (
	"context"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ferry-broker/ferry/internal/grant"
)

// maxIntrospectedToken bounds what Introspect parses: Ferry's tokens are
// far smaller, so anything larger is not one of them.
const maxIntrospectedToken = 16 << 10

// Release implements grant.Releaser: the token's jti (its Release state)
// goes on the revocation list shared by every replica until the token's
// exp, and Introspect answers inactive for it from then on. A service
// that only verifies the token's signature against the JWKS cannot see the
// list and accepts it until it expires: the detail says so.
func (s *Signer) Release(ctx context.Context, req grant.ReleaseRequest) (grant.Released, error) {
	if req.State == "" {
		return grant.Released{}, fmt.Errorf("release token: no jti recorded")
	}
	if !req.ExpiresAt.After(req.Now) {
		return grant.Released{Detail: fmt.Sprintf("token %s expired at %s; nothing to revoke", req.State, req.ExpiresAt.UTC().Format(time.RFC3339))}, nil
	}
	if req.Shared == nil {
		return grant.Released{}, &grant.UnavailableError{Reason: "no revocation list to put the token on", RetryAfter: 5 * time.Second}
	}
	if err := req.Shared.Revoke(ctx, req.State, req.ExpiresAt); err != nil {
		return grant.Released{}, &grant.UnavailableError{Reason: "could not put the token on the revocation list; try again", RetryAfter: 5 * time.Second, Err: err}
	}
	return grant.Released{Revoked: true, Detail: fmt.Sprintf(
		"token %s is revoked: POST /v1/introspect answers inactive for it; a service that only verifies its signature accepts it until %s",
		req.State, req.ExpiresAt.UTC().Format(time.RFC3339))}, nil
}

// Introspect implements grant.Introspector: the claims of a token this
// signer issued (signed by one of its keys, iss its issuer, typ JWT) that
// has not expired and is not on the revocation list; nil otherwise.
func (s *Signer) Introspect(ctx context.Context, raw string, shared grant.Shared, now time.Time) (map[string]any, error) {
	if len(raw) > maxIntrospectedToken {
		return nil, nil
	}
	tok, err := jwt.ParseSigned(raw, s.algorithms())
	if err != nil || len(tok.Headers) != 1 {
		return nil, nil
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "JWT" {
		return nil, nil // a checkpoint signature, or another issuer's JWS
	}
	keys := s.jwks.Key(h.KeyID)
	if len(keys) != 1 || keys[0].Algorithm != h.Algorithm {
		return nil, nil
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return nil, nil
	}
	if std.ID == "" || std.Expiry == nil {
		return nil, nil
	}
	// No leeway: RFC 7662's "active" is about now, and a revocation list
	// entry lives only a little past exp.
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: s.issuer, Time: now}, 0); err != nil || !now.Before(std.Expiry.Time()) {
		return nil, nil // go-jose still accepts the second of exp itself; RFC 7519 does not
	}
	if shared == nil {
		return nil, fmt.Errorf("introspect: no revocation list to check")
	}
	revoked, err := shared.Revoked(ctx, std.ID)
	if err != nil {
		return nil, fmt.Errorf("introspect token %s: %w", std.ID, err)
	}
	if revoked {
		return nil, nil
	}
	return all, nil
}

// algorithms are the algorithms of the published keys.
func (s *Signer) algorithms() []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for _, k := range s.jwks.Keys {
		out = append(out, jose.SignatureAlgorithm(k.Algorithm))
	}
	return out
}
