package ghapp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferry-broker/ferry/internal/grant"
)

// Answer is the contract's github object of an exchange's answer. Token is
// a secret.
type Answer struct {
	Token        string            `json:"token"`
	ExpiresAt    time.Time         `json:"expires_at"`
	Repositories []string          `json:"repositories"`
	Permissions  map[string]string `json:"permissions"`
}

// releaseState is what release needs to end a token, kept by the broker
// until the token expires: nothing secret (the token's hash, not the
// token; GitHub deletes a token only when shown the token itself, which
// the job presents at release).
type releaseState struct {
	APIURL         string `json:"api_url"`
	InstallationID int64  `json:"installation_id"`
	Owner          string `json:"owner"`
	TokenSHA256    string `json:"token_sha256"`
}

// Mint implements grant.Minter. The lifetime is GitHub's (an hour): the
// request's is ignored, as the spec's FixedLifetime tells the exchange.
func (m *Minter) Mint(ctx context.Context, req grant.Request) (*grant.Credential, error) {
	g, ok := req.Spec.(*Spec)
	if !ok || !g.Rendered() {
		return nil, &grant.BadGrantError{Kind: KindName, Field: "github", Reason: "the grant reached the minter with its templates not filled in"}
	}
	tok, err := m.CreateToken(ctx, g.Owner, g.Repositories, g.Permissions)
	if err != nil {
		return nil, err
	}
	state, err := json.Marshal(releaseState{APIURL: m.root, InstallationID: tok.InstallationID, Owner: g.Owner, TokenSHA256: tokenHash(tok.Value)})
	if err != nil {
		return nil, fmt.Errorf("github release state: %w", err)
	}
	return &grant.Credential{
		Answer:    &Answer{Token: tok.Value, ExpiresAt: tok.ExpiresAt, Repositories: tok.Repositories, Permissions: tok.Permissions},
		ExpiresAt: tok.ExpiresAt,
		ID:        tok.ID(),
		Release:   string(state),
		Scope:     scope(tok.Permissions),
	}, nil
}

// Release implements grant.Releaser: it deletes the token at GitHub
// (DELETE /installation/token), which GitHub does only when shown the
// token, so the job presents it. A token already expired needs nothing;
// one GitHub no longer accepts was revoked or expired already.
func (m *Minter) Release(ctx context.Context, req grant.ReleaseRequest) (grant.Released, error) {
	var st releaseState
	if err := json.Unmarshal([]byte(req.State), &st); err != nil || st.TokenSHA256 == "" {
		return grant.Released{}, errors.New("github release: the recorded state does not parse")
	}
	now := req.Now
	if now.IsZero() {
		now = m.now()
	}
	if !req.ExpiresAt.IsZero() && !now.Before(req.ExpiresAt) {
		return grant.Released{Detail: fmt.Sprintf("the GitHub token expired at %s; there was nothing to delete", req.ExpiresAt.UTC().Format(time.RFC3339))}, nil
	}
	if req.Presented == "" {
		return grant.Released{}, fmt.Errorf("%w: GitHub deletes an installation token only when shown it; send the token with the release", grant.ErrCredentialRequired)
	}
	if subtle.ConstantTimeCompare([]byte(tokenHash(req.Presented)), []byte(st.TokenSHA256)) != 1 {
		return grant.Released{}, fmt.Errorf("%w: the token presented is not the GitHub token this request minted", grant.ErrWrongCredential)
	}
	if st.APIURL != m.root {
		// The token never goes to an API other than the one that minted
		// it, nor to one the broker no longer trusts.
		return grant.Released{Detail: fmt.Sprintf("the token was minted through another GitHub API than this broker's github_app.api_url; it was not deleted and expires at %s", req.ExpiresAt.UTC().Format(time.RFC3339))}, nil
	}
	revoked, err := m.RevokeToken(ctx, req.Presented)
	switch {
	case err != nil:
		return grant.Released{}, err
	case !revoked:
		return grant.Released{Detail: "GitHub no longer accepted the token: it had been revoked or had expired already"}, nil
	}
	return grant.Released{Revoked: true, Detail: fmt.Sprintf("GitHub deleted the installation token for %s", st.Owner)}, nil
}

// scope writes a token's permissions as the audit keeps them,
// "contents:read", sorted.
func scope(perms map[string]string) []string {
	out := make([]string, 0, len(perms))
	for name, level := range perms {
		out = append(out, name+":"+level)
	}
	slices.Sort(out)
	return out
}
