// Package identity verifies the OIDC ID tokens CI platforms give their jobs
// (GitHub Actions, GitLab CI) against a set of trusted issuers and turns a
// good token into a typed claim set. It enforces Ferry's security floor:
// asymmetric signatures only, the exact configured issuer and its own keys,
// a configured audience, exp/nbf/iat within at most 60 s of skew, and a jti
// so the broker can make the token single-use.
//
// Keys and discovery are this package's own (keys.go, refresh.go) rather
// than go-oidc's NewProvider and RemoteKeySet, which give the broker none
// of what it needs: a refetch on an unknown kid rate-limited per issuer, a
// scheduled refetch that honours Cache-Control, the last good keys kept
// through an outage, typed errors that become 401 or 503 with
// Retry-After, and per-issuer freshness for /metrics and /readyz. They
// also read an issuer's responses without a size bound and quote a failed
// response's body in their errors.
//
// Verification does not run go-oidc's IDTokenVerifier per token either.
// It parsed the JWS a second time and decoded the claims into a struct of
// its own besides Ferry's decode, which cost about a third of Verify (see
// docs/performance.md, "Token verification"). Verify instead makes every
// check go-oidc made, with Ferry's stricter ones on top: compact JWS with
// exactly one signature by an allowed asymmetric algorithm, the signature
// by a key of the issuer named by the token's one decoded iss, iss equal
// to that configured issuer, and the claim types go-oidc decoded (see
// checkRegistered). go-oidc stays the reference in the tests
// (oidc_test.go): a table and a fuzz target sign payloads with a real key
// and check that Verify never accepts a token go-oidc refuses and reads
// the same registered claims when both accept.
package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/urlcheck"
)

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	Name      string   // config name, e.g. "github"; policies refer to it
	IssuerURL string   // the exact iss tokens carry
	Audiences []string // a token's aud must contain one of these
	JWKSURL   string   // optional: fetch keys here instead of through discovery
}

// Options tunes a Pool. The zero value is the production default.
type Options struct {
	// Leeway is the clock skew allowed when checking exp, nbf and iat:
	// 60s when zero; more than 60s is refused.
	Leeway time.Duration
	// HTTPClient fetches discovery and keys; a client with a 10s timeout
	// when nil.
	HTTPClient *http.Client
	// Now is the clock, for tests; time.Now when nil.
	Now func() time.Time
	// MaxTokenBytes refuses longer tokens before parsing them; 16 KiB when
	// zero.
	MaxTokenBytes int
	// MinRefresh is the least time between two key fetches of one issuer,
	// so that tokens with made-up kids cannot make the broker hammer it;
	// 30s when zero.
	MinRefresh time.Duration
	// RefreshInterval is the most time between two scheduled key fetches
	// of one issuer (see Run): 15m when zero, and more is refused, so a
	// key an issuer withdraws stops verifying within it. A shorter
	// Cache-Control max-age on the JWKS shortens it, down to MinRefresh.
	RefreshInterval time.Duration
	// Logger receives key refresh failures; slog.Default() when nil.
	Logger *slog.Logger
	// Claims are the CI platforms' rules for their claims' types (a
	// repository must be a string, a run id an integer): a token that
	// breaks them is refused. nil checks the JWT's own claims only.
	Claims ClaimRules
}

// ClaimRules check a verified token's claims beyond the JWT's own;
// platform.Set is the broker's.
type ClaimRules interface {
	Check(c *claims.Set) error
}

// The defaults and bounds of Options.
const (
	DefaultLeeway        = 60 * time.Second
	MaxLeeway            = 60 * time.Second
	DefaultMaxTokenBytes = 16 << 10
	DefaultMinRefresh    = 30 * time.Second
	MaxRefreshInterval   = 15 * time.Minute
	defaultHTTPTimeout   = 10 * time.Second
)

// asymmetricAlgs are the only signature algorithms accepted. Symmetric
// ones (HS*) would let anyone holding an issuer's public key forge tokens,
// and "none" is no signature at all.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Identity is a verified CI token.
type Identity struct {
	Issuer string      // the issuer's config name
	Claims *claims.Set // verified, typed claims
}

// Pool verifies tokens from several issuers. It is safe for concurrent use.
type Pool struct {
	issuers  []*issuer
	byURL    map[string]*issuer
	leeway   time.Duration
	maxBytes int
	now      func() time.Time
	rules    ClaimRules
}

type issuer struct {
	cfg  IssuerConfig
	keys *keySet
}

// NewPool checks the issuer configs and options. It does not contact any
// issuer: the broker must start even while an issuer is down, and keys are
// fetched on first use (or by Warm).
func NewPool(cfgs []IssuerConfig, opts Options) (*Pool, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if len(cfgs) == 0 {
		return nil, errors.New("identity: no issuers configured")
	}
	p := &Pool{
		byURL:    make(map[string]*issuer, len(cfgs)),
		leeway:   opts.Leeway,
		maxBytes: opts.MaxTokenBytes,
		now:      opts.Now,
		rules:    opts.Claims,
	}
	names := make(map[string]bool, len(cfgs))
	var errs []error
	for i, cfg := range cfgs {
		if err := cfg.validate(); err != nil {
			errs = append(errs, fmt.Errorf("issuer %d (%q): %w", i, cfg.Name, err))
			continue
		}
		if names[cfg.Name] {
			errs = append(errs, fmt.Errorf("issuer %d: name %q is used twice", i, cfg.Name))
			continue
		}
		if p.byURL[cfg.IssuerURL] != nil {
			errs = append(errs, fmt.Errorf("issuer %d (%q): issuer URL %q is configured twice", i, cfg.Name, cfg.IssuerURL))
			continue
		}
		names[cfg.Name] = true
		cfg.Audiences = append([]string(nil), cfg.Audiences...)
		keys := &keySet{
			issuer:     cfg.Name,
			issuerURL:  cfg.IssuerURL,
			jwksURL:    cfg.JWKSURL,
			client:     opts.HTTPClient,
			minRefresh: opts.MinRefresh,
			interval:   opts.RefreshInterval,
			now:        opts.Now,
			log:        opts.Logger,
			after:      time.After,
		}
		is := &issuer{cfg: cfg, keys: keys}
		p.issuers = append(p.issuers, is)
		p.byURL[cfg.IssuerURL] = is
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return p, nil
}

func (o *Options) fill() error {
	switch {
	case o.Leeway < 0:
		return fmt.Errorf("identity: leeway %s is negative", o.Leeway)
	case o.Leeway > MaxLeeway:
		return fmt.Errorf("identity: leeway %s is more than the %s allowed", o.Leeway, MaxLeeway)
	case o.Leeway == 0:
		o.Leeway = DefaultLeeway
	}
	switch {
	case o.MaxTokenBytes < 0:
		return fmt.Errorf("identity: max token bytes %d is negative", o.MaxTokenBytes)
	case o.MaxTokenBytes == 0:
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	switch {
	case o.MinRefresh < 0:
		return fmt.Errorf("identity: min refresh %s is negative", o.MinRefresh)
	case o.MinRefresh == 0:
		o.MinRefresh = DefaultMinRefresh
	}
	switch {
	case o.RefreshInterval < 0:
		return fmt.Errorf("identity: refresh interval %s is negative", o.RefreshInterval)
	case o.RefreshInterval > MaxRefreshInterval:
		return fmt.Errorf("identity: refresh interval %s is more than the %s allowed", o.RefreshInterval, MaxRefreshInterval)
	case o.RefreshInterval == 0:
		o.RefreshInterval = MaxRefreshInterval
	}
	if o.MinRefresh > o.RefreshInterval {
		return fmt.Errorf("identity: min refresh %s is more than the refresh interval %s", o.MinRefresh, o.RefreshInterval)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func (c IssuerConfig) validate() error {
	if c.Name == "" {
		return errors.New("name is empty")
	}
	if err := checkURL(c.IssuerURL); err != nil {
		return fmt.Errorf("issuer URL: %w", err)
	}
	if c.JWKSURL != "" {
		if err := checkURL(c.JWKSURL); err != nil {
			return fmt.Errorf("JWKS URL: %w", err)
		}
	}
	if len(c.Audiences) == 0 {
		return errors.New("no audiences: every token for this broker must name it in aud")
	}
	for _, a := range c.Audiences {
		if a == "" {
			return errors.New("an audience is empty")
		}
	}
	return nil
}

// checkURL applies urlcheck's rule for issuer and key URLs: keys fetched
// over plain http from anywhere but this machine could be swapped on the
// way, and a password in a URL has no business in a config or a discovery
// document.
func checkURL(raw string) error {
	if err := urlcheck.Endpoint(raw); err != nil {
		return fmt.Errorf("%s %w", claims.Describe(raw), err)
	}
	return nil
}

// Verify checks a raw token and returns who it identifies. A refusal is a
// *TokenError; an issuer whose keys cannot be had is an *UnavailableError.
//
// The token is parsed once, its payload decoded once, and its signature
// checked once. The one decoded iss both picks the keys and is the iss that
// is checked and returned, and the claims are trusted only after the
// signature verified over exactly the bytes they were decoded from.
func (p *Pool) Verify(ctx context.Context, raw string) (*Identity, error) {
	if len(raw) > p.maxBytes {
		return nil, tokenErrorf("token is %d bytes, more than the %d allowed", len(raw), p.maxBytes)
	}
	// Only compact JWS is a JWT, and the algorithm allow-list applies
	// before anything else is read from the token.
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return nil, tokenErrorf("token algorithm %s is not allowed: only asymmetric signatures (RS*, PS*, ES*, EdDSA) are accepted", claims.Describe(string(algErr.Got)))
		}
		return nil, &TokenError{Reason: "token is not a well-formed signed JWT", Err: err}
	}
	if len(jws.Signatures) != 1 {
		return nil, tokenErrorf("token has %d signatures, want exactly one", len(jws.Signatures))
	}
	hdr := jws.Signatures[0].Header

	// Not yet trusted: read only to choose the issuer whose keys check it.
	// A claim of the wrong type is reported once the signature holds, so
	// a forgery learns nothing from the claims it made up.
	payload := jws.UnsafePayloadWithoutVerification()
	set, typeErr := claims.Parse(payload)
	var te *claims.TypeError
	switch {
	case typeErr != nil && !errors.As(typeErr, &te):
		return nil, &TokenError{Reason: "token payload is not one well-formed JSON object: " + claims.SyntaxReason(typeErr), Err: typeErr}
	case te != nil && te.Claim == "iss":
		return nil, tokenErrorf("token payload is not a JSON object with a string iss: iss is %s", te.Got)
	}
	iss, ok := set.Get("iss")
	if !ok {
		return nil, tokenErrorf("token has no iss claim")
	}
	is := p.byURL[iss.Text]
	if is == nil {
		return nil, tokenErrorf("token issuer %s is not a configured issuer", claims.Describe(iss.Text))
	}

	keys, err := is.keys.lookup(ctx, hdr.KeyID, hdr.Algorithm)
	if err != nil {
		return nil, err
	}
	verified, err := verifySignature(jws, keys)
	if err != nil {
		return nil, &TokenError{Reason: fmt.Sprintf("token signature does not verify with the keys of issuer %q", is.cfg.Name), Err: err}
	}
	// go-jose returns the payload it parsed; should that ever differ from
	// the bytes decoded above, the decoded claims are not the signed ones.
	if !bytes.Equal(verified, payload) {
		return nil, tokenErrorf("token signature does not cover the decoded payload")
	}

	err = typeErr
	if err == nil && p.rules != nil {
		err = p.rules.Check(set)
	}
	if err == nil {
		err = checkRegistered(set)
	}
	if err != nil {
		return nil, &TokenError{Reason: "token claims: " + err.Error(), Err: err}
	}
	// The exact issuer check go-oidc made; the map lookup above already
	// implies it, and it costs nothing to keep it explicit.
	if set.Issuer != is.cfg.IssuerURL {
		return nil, tokenErrorf("token issuer %s is not %q", claims.Describe(set.Issuer), is.cfg.IssuerURL)
	}
	if err := p.checkTimes(set); err != nil {
		return nil, err
	}
	if len(set.Audience) == 0 {
		return nil, tokenErrorf("token has no aud claim")
	}
	if !set.HasAudience(is.cfg.Audiences) {
		return nil, tokenErrorf("token audience %s is not one of %s accepted for issuer %q",
			describeList(set.Audience), describeList(is.cfg.Audiences), is.cfg.Name)
	}
	if set.ID == "" {
		return nil, tokenErrorf("token has no jti; single use cannot be enforced")
	}
	return &Identity{Issuer: is.cfg.Name, Claims: set}, nil
}

func (p *Pool) checkTimes(set *claims.Set) error {
	now := p.now()
	const layout = time.RFC3339
	if set.Expiry.IsZero() {
		return tokenErrorf("token has no exp claim")
	}
	if now.After(set.Expiry.Add(p.leeway)) {
		return tokenErrorf("token expired at %s (now %s, leeway %s)", set.Expiry.Format(layout), now.UTC().Format(layout), p.leeway)
	}
	if !set.NotBefore.IsZero() && set.NotBefore.After(now.Add(p.leeway)) {
		return tokenErrorf("token is not valid before %s (now %s, leeway %s)", set.NotBefore.Format(layout), now.UTC().Format(layout), p.leeway)
	}
	if !set.IssuedAt.IsZero() && set.IssuedAt.After(now.Add(p.leeway)) {
		return tokenErrorf("token was issued in the future, at %s (now %s, leeway %s)", set.IssuedAt.Format(layout), now.UTC().Format(layout), p.leeway)
	}
	return nil
}

// Warm fetches every issuer's keys now (unless fetched within MinRefresh)
// and returns the failures, joined. Cached keys survive a failure, so an
// error here does not mean verification will fail.
func (p *Pool) Warm(ctx context.Context) error {
	var errs []error
	for _, is := range p.issuers {
		if err := is.keys.refresh(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Ready returns nil when every issuer has keys cached, fetching them for
// issuers that have none (subject to MinRefresh). An error names the
// issuers whose tokens cannot be verified now.
func (p *Pool) Ready(ctx context.Context) error {
	return errors.Join(p.down(ctx)...)
}

// Readiness is Ready for a load balancer: the pool is ready while any
// issuer's tokens can be verified, since one platform's outage must not take
// every replica out of service for the others. problems names each issuer
// that is down, and each whose last key fetch failed (its tokens still
// verify, with the keys from before); err is set only when all are down.
func (p *Pool) Readiness(ctx context.Context) (problems []string, err error) {
	down := p.down(ctx)
	if len(down) == len(p.issuers) {
		return nil, errors.Join(down...)
	}
	for _, e := range down {
		problems = append(problems, e.Error())
	}
	for _, is := range p.issuers {
		if msg := is.keys.staleProblem(); msg != "" {
			problems = append(problems, msg)
		}
	}
	return problems, nil
}

// down fetches keys for issuers that have none and returns why each issuer
// still without keys cannot verify tokens now.
func (p *Pool) down(ctx context.Context) []error {
	var errs []error
	for _, is := range p.issuers {
		if is.keys.cached() {
			continue
		}
		if err := is.keys.refresh(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Issuers lists the configured issuer names, in config order.
func (p *Pool) Issuers() []string {
	names := make([]string, len(p.issuers))
	for i, is := range p.issuers {
		names[i] = is.cfg.Name
	}
	return names
}

func describeList(vs []string) string {
	const max = 5
	parts := make([]string, 0, max+1)
	for i, v := range vs {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(vs)-max))
			break
		}
		parts = append(parts, claims.Describe(v))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
