// Package ghapp is the github grant kind: Ferry acts as a GitHub App and
// mints the App's installation tokens, each limited to a policy's
// repositories and permissions, so that no personal access token has to
// live in CI.
//
// The App authenticates with a JWT it signs itself, with go-jose (already
// Ferry's JOSE library), rather than through ghinstallation: that library
// is built around a transport per installation that caches one token and
// refreshes it, while every Ferry grant is one fresh token with its own
// repositories and permissions, for one job, never shared or reused. The
// REST calls go through github.com/google/go-github, whose error types
// tell GitHub's refusals, rate limits and outages apart; each call gets a
// client of its own, authenticated with that call's credential only, so
// that no rate-limit state or credential carries from one job to another.
package ghapp

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v89/github"

	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/urlcheck"
)

// Options configures a Minter.
type Options struct {
	AppID int64
	Key   *rsa.PrivateKey
	// APIURL is the REST API root; "" is https://api.github.com.
	APIURL string
	// Transport carries the calls; nil is a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Now is the clock the App JWT is dated by; nil is time.Now.
	Now func() time.Time
}

// Minter mints and deletes installation tokens of one GitHub App.
type Minter struct {
	app       *appSigner
	root      string // the API root as configured, without a trailing slash
	base      string // the same with one, as go-github wants it
	host      string
	transport http.RoundTripper
	logger    *slog.Logger
	now       func() time.Time
}

// New returns a Minter for the App.
func New(o Options) (*Minter, error) {
	if o.AppID <= 0 {
		return nil, errors.New("app_id must be a positive number")
	}
	if o.Key == nil {
		return nil, errors.New("no App key")
	}
	if o.APIURL == "" {
		o.APIURL = config.DefaultGitHubAPI
	}
	root := strings.TrimRight(o.APIURL, "/")
	if err := urlcheck.Endpoint(root); err != nil {
		return nil, fmt.Errorf("api_url %w", err)
	}
	u, _ := url.Parse(root)
	app, err := newAppSigner(o.AppID, o.Key)
	if err != nil {
		return nil, err
	}
	m := &Minter{app: app, root: root, base: root + "/", host: u.Host, transport: o.Transport, logger: o.Logger, now: o.Now}
	if m.transport == nil {
		m.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// APIURL is the REST API root the minter calls.
func (m *Minter) APIURL() string { return m.root }

// Token is a minted installation token. Value is the secret.
type Token struct {
	Value          string
	ExpiresAt      time.Time
	InstallationID int64
	// Repositories are the token's, as OWNER/NAME.
	Repositories []string
	// Permissions are what GitHub says the token holds.
	Permissions map[string]string
}

// ID is the token's non-secret id for the audit log: sha256: and the first
// 16 hex digits of its SHA-256.
func (t *Token) ID() string { return "sha256:" + tokenHash(t.Value)[:16] }

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// client is a go-github client that authenticates every call with bearer
// (the App JWT, or an installation token) and with nothing else.
func (m *Minter) client(bearer string) (*github.Client, error) {
	hc := &http.Client{
		Transport: bearerTransport{token: bearer, base: m.transport},
		// A backstop: the exchange bounds each mint with its own deadline.
		Timeout:       30 * time.Second,
		CheckRedirect: m.sameHost,
	}
	return github.NewClient(github.WithHTTPClient(hc), github.WithURLs(&m.base, &m.base), github.WithUserAgent("ferry"))
}

// sameHost follows a redirect (GitHub sends one for a renamed repository)
// only to the API's own host over the same scheme: the credential is added
// to every request, so it must not go anywhere else.
func (m *Minter) sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("stopped after 3 redirects")
	}
	if req.URL.Host != m.host || req.URL.Scheme != via[0].URL.Scheme {
		return errOtherHost
	}
	return nil
}

var errOtherHost = errors.New("redirected the request to another host; not followed")

type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// tokenRequest is the body of POST /app/installations/{id}/access_tokens.
// Its own type rather than go-github's, whose permissions are a struct of
// the names it knows: a name missing there would be dropped silently,
// where this sends exactly what the policy says.
type tokenRequest struct {
	Repositories []string          `json:"repositories"`
	Permissions  map[string]string `json:"permissions"`
}

// tokenResponse is GitHub's answer to it.
type tokenResponse struct {
	Token               string            `json:"token"`
	ExpiresAt           time.Time         `json:"expires_at"`
	Permissions         map[string]string `json:"permissions"`
	RepositorySelection string            `json:"repository_selection"`
	Repositories        []struct {
		Name     string `json:"name"`
		FullName string `json:"full_name"`
	} `json:"repositories"`
}

// CreateToken finds the App's installation on owner, through the first
// repository, and mints a token for exactly repos (names within owner)
// and perms. GitHub refusing or failing is a *grant.UpstreamError.
func (m *Minter) CreateToken(ctx context.Context, owner string, repos []string, perms map[string]string) (*Token, error) {
	if len(repos) == 0 || len(perms) == 0 {
		// GitHub would take none as "all": never ask for that.
		return nil, &grant.BadGrantError{Kind: KindName, Field: "github", Reason: "a token must name its repositories and permissions"}
	}
	jwt, err := m.app.sign(m.now())
	if err != nil {
		return nil, &grant.UnavailableError{Reason: "could not sign the GitHub App's JWT", RetryAfter: 5 * time.Second, Err: err}
	}
	gh, err := m.client(jwt)
	if err != nil {
		return nil, fmt.Errorf("github client: %w", err)
	}
	inst, _, err := gh.Apps.GetRepositoryInstallation(ctx, owner, repos[0])
	if err != nil {
		return nil, installationError(ctx, owner, repos[0], err)
	}
	if login := inst.GetAccount().GetLogin(); !strings.EqualFold(login, owner) {
		// A transferred repository redirects to its new owner's
		// installation: a token there is not what the policy names.
		return nil, &grant.UpstreamError{Provider: Provider, Code: "404",
			Message: fmt.Sprintf("repository %s/%s belongs to %s now, not to %s", owner, repos[0], login, owner)}
	}
	req, err := gh.NewRequest(ctx, http.MethodPost, fmt.Sprintf("app/installations/%d/access_tokens", inst.GetID()), &tokenRequest{Repositories: repos, Permissions: perms})
	if err != nil {
		return nil, fmt.Errorf("github request: %w", err)
	}
	var tr tokenResponse
	if _, err := gh.Do(req, &tr); err != nil {
		return nil, upstreamError(ctx, err)
	}
	tok, why := checkGranted(&tr, owner, repos, perms)
	if why != "" {
		if tr.Token != "" {
			m.revokeQuietly(tr.Token)
		}
		return nil, &grant.UpstreamError{Provider: Provider, Message: why + "; the token was deleted"}
	}
	tok.InstallationID = inst.GetID()
	return tok, nil
}

// checkGranted compares what GitHub granted with what was asked. It
// returns the token, or why it must not be handed out: GitHub granting
// more than asked (all repositories, a stronger permission) is refused
// rather than passed on.
func checkGranted(tr *tokenResponse, owner string, repos []string, perms map[string]string) (*Token, string) {
	switch {
	case tr.Token == "":
		return nil, "GitHub answered without a token"
	case tr.ExpiresAt.IsZero():
		return nil, "GitHub answered without the token's expires_at"
	case tr.RepositorySelection != "" && tr.RepositorySelection != "selected":
		return nil, fmt.Sprintf("GitHub granted repository_selection %q, not the repositories asked for", tr.RepositorySelection)
	}
	asked := map[string]bool{}
	for _, r := range repos {
		asked[strings.ToLower(r)] = true
	}
	tok := &Token{Value: tr.Token, ExpiresAt: tr.ExpiresAt, Permissions: tr.Permissions}
	for _, r := range tr.Repositories {
		if !asked[strings.ToLower(r.Name)] {
			return nil, fmt.Sprintf("GitHub granted repository %s, which was not asked for", r.FullName)
		}
		tok.Repositories = append(tok.Repositories, r.FullName)
	}
	if len(tr.Repositories) == 0 {
		for _, r := range repos {
			tok.Repositories = append(tok.Repositories, owner+"/"+r)
		}
	}
	if tok.Permissions == nil {
		tok.Permissions = perms
	}
	for name, level := range tok.Permissions {
		if want, ok := perms[name]; ok && rank(level) <= rank(want) {
			continue
		}
		if name == "metadata" && level == Read {
			continue // every installation token can read metadata
		}
		return nil, fmt.Sprintf("GitHub granted %s: %s, more than was asked for", name, level)
	}
	return tok, ""
}

func rank(level string) int {
	switch level {
	case Read:
		return 1
	case Write:
		return 2
	case Admin:
		return 3
	}
	return 99 // unknown: more than anything asked
}

// RevokeToken deletes an installation token at GitHub, authenticated with
// the token itself. It reports false when GitHub no longer accepted the
// token (expired or revoked already).
func (m *Minter) RevokeToken(ctx context.Context, token string) (bool, error) {
	gh, err := m.client(token)
	if err != nil {
		return false, fmt.Errorf("github client: %w", err)
	}
	_, err = gh.Apps.RevokeInstallationToken(ctx)
	var er *github.ErrorResponse
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusUnauthorized:
		return false, nil
	}
	return false, upstreamError(ctx, err)
}

// revokeQuietly deletes a token that must not be handed out, logging a
// failure: the token then lives out its hour, unseen by anyone.
func (m *Minter) revokeQuietly(token string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.RevokeToken(ctx, token); err != nil {
		m.logger.Error("could not delete a GitHub token that was refused", "err", err)
	}
}
