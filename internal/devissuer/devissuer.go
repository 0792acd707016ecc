// Package devissuer is a real OIDC token issuer that runs on loopback. It
// serves discovery and JWKS over HTTP the way GitHub Actions and GitLab do
// and signs CI-shaped ID tokens with its own RSA key, so `ferry demo` and
// the tests exercise the same verification path as production, with real
// keys and real HTTP, and no cloud or CI account.
package devissuer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Flavor is the CI platform whose issuer layout is imitated.
type Flavor string

// The supported flavors. The zero Flavor is GitHub.
const (
	// GitHub serves JWKS at /.well-known/jwks, as
	// token.actions.githubusercontent.com does; tokens live 5 minutes and
	// their nbf lies 10 minutes before iat.
	GitHub Flavor = "github"
	// GitLab serves JWKS at /oauth/discovery/keys; tokens live an hour (a
	// job timeout) and nbf equals iat.
	GitLab Flavor = "gitlab"
)

// Options configures Start.
type Options struct {
	Flavor Flavor // GitHub when empty
	Addr   string // listen address, "127.0.0.1:0" when empty; must be loopback
	// PathPrefix is prepended to every path and becomes part of the issuer
	// URL, as GitHub Enterprise Server's "/_services/token".
	PathPrefix string
}

const (
	discoveryPath = "/.well-known/openid-configuration"
	keySize       = 2048
)

// Issuer is a running local OIDC issuer.
type Issuer struct {
	flavor   Flavor
	url      string
	jwksPath string
	jwksURL  string
	srv      *http.Server

	mu  sync.RWMutex
	key *rsa.PrivateKey
	kid string

	down         atomic.Bool
	jwksRequests atomic.Int64
}

// Start generates a signing key and serves discovery and JWKS until Close.
func Start(opts Options) (*Issuer, error) {
	flavor := opts.Flavor
	if flavor == "" {
		flavor = GitHub
	}
	var jwksPath string
	switch flavor {
	case GitHub:
		jwksPath = "/.well-known/jwks"
	case GitLab:
		jwksPath = "/oauth/discovery/keys"
	default:
		return nil, fmt.Errorf("start dev issuer: unknown flavor %q (want %q or %q)", flavor, GitHub, GitLab)
	}
	prefix := opts.PathPrefix
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/")) {
		return nil, fmt.Errorf("start dev issuer: path prefix %q must start with / and not end with /", prefix)
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, fmt.Errorf("start dev issuer: %w", err)
	}

	i := &Issuer{flavor: flavor, jwksPath: prefix + jwksPath}
	if err := i.RotateKey(); err != nil {
		return nil, fmt.Errorf("start dev issuer: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start dev issuer: listen on %s: %w", addr, err)
	}
	i.url = "http://" + ln.Addr().String() + prefix
	i.jwksURL = "http://" + ln.Addr().String() + i.jwksPath

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+discoveryPath, i.serveDiscovery)
	mux.HandleFunc("GET "+i.jwksPath, i.serveJWKS)
	i.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = i.srv.Serve(ln) }()
	return i, nil
}

// checkLoopback refuses to serve anywhere but loopback: the issuer's keys
// are generated per run and anyone who can reach it could be confused into
// trusting them.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("listen address %q is not a loopback address", addr)
}

// URL is the issuer identifier, exactly as tokens carry it in iss.
func (i *Issuer) URL() string { return i.url }

// Flavor is the platform this issuer imitates.
func (i *Issuer) Flavor() Flavor { return i.flavor }

// JWKSURL is where the issuer publishes its keys.
func (i *Issuer) JWKSURL() string { return i.jwksURL }

// Key is the current signing key.
func (i *Issuer) Key() *rsa.PrivateKey {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.key
}

// KeyID is the kid of the current signing key.
func (i *Issuer) KeyID() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.kid
}

// RotateKey replaces the signing key. The JWKS then publishes only the new
// key, so tokens signed by the old one stop verifying once a verifier
// refreshes.
func (i *Issuer) RotateKey() error {
	key, err := rsa.GenerateKey(rand.Reader, keySize)
	if err != nil {
		return fmt.Errorf("generate RSA key: %w", err)
	}
	// GitHub's kids are key thumbprints; do the same so kids are stable
	// for a key and distinct across keys.
	thumb, err := (&jose.JSONWebKey{Key: &key.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("thumbprint RSA key: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.key, i.kid = key, hex.EncodeToString(thumb[:16])
	return nil
}

// SetDown makes discovery and JWKS answer 503 while down is true, as an
// issuer outage looks to a verifier.
func (i *Issuer) SetDown(down bool) { i.down.Store(down) }

// JWKSRequests counts requests to the JWKS endpoint, answered or not.
func (i *Issuer) JWKSRequests() int { return int(i.jwksRequests.Load()) }

// Close stops serving.
func (i *Issuer) Close() error {
	if err := i.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("close dev issuer: %w", err)
	}
	return nil
}

// Sign issues a token over claims with the issuer's key, filling the
// registered claims the way the platform does. A claim set to nil is left
// out of the token, so a test can build a token with no exp or no jti.
func (i *Issuer) Sign(claims map[string]any) (string, error) {
	i.mu.RLock()
	key, kid := i.key, i.kid
	i.mu.RUnlock()
	return i.SignWith(key, string(jose.RS256), kid, claims)
}

// SignWith issues a token like Sign but with any key, algorithm and kid, to
// build forged tokens for attack tests. key is an *rsa.PrivateKey,
// *ecdsa.PrivateKey or ed25519.PrivateKey.
func (i *Issuer) SignWith(key crypto.Signer, alg string, kid string, claims map[string]any) (string, error) {
	payload, err := json.Marshal(i.fill(claims, time.Now()))
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("new %s signer: %w", alg, err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return jws.CompactSerialize()
}

// fill copies claims and adds iss, iat, nbf, exp and jti where absent.
func (i *Issuer) fill(claims map[string]any, now time.Time) map[string]any {
	nbf, life := -600*time.Second, 300*time.Second
	if i.flavor == GitLab {
		nbf, life = 0, time.Hour
	}
	out := make(map[string]any, len(claims)+5)
	for k, v := range claims {
		out[k] = v
	}
	defaults := map[string]any{
		"iss": i.url,
		"iat": now.Unix(),
		"nbf": now.Add(nbf).Unix(),
		"exp": now.Add(life).Unix(),
		"jti": rand.Text(),
	}
	for k, v := range defaults {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	if i.down.Load() {
		http.Error(w, "issuer is down", http.StatusServiceUnavailable)
		return
	}
	doc := map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.jwksURL,
		"subject_types_supported":               []string{"public", "pairwise"},
		"response_types_supported":              []string{"id_token"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"scopes_supported":                      []string{"openid"},
		"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "repository_id", "environment", "event_name", "actor", "run_id"},
	}
	if i.flavor == GitLab {
		doc["authorization_endpoint"] = i.url + "/oauth/authorize"
		doc["token_endpoint"] = i.url + "/oauth/token"
		doc["userinfo_endpoint"] = i.url + "/oauth/userinfo"
		doc["response_types_supported"] = []string{"code"}
		doc["subject_types_supported"] = []string{"public"}
		doc["claims_supported"] = []string{"iss", "sub", "aud", "exp", "iat", "jti", "nbf", "project_path", "project_id", "namespace_path", "ref", "ref_protected", "environment"}
	}
	writeJSON(w, doc)
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	i.jwksRequests.Add(1)
	if i.down.Load() {
		http.Error(w, "issuer is down", http.StatusServiceUnavailable)
		return
	}
	i.mu.RLock()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
	i.mu.RUnlock()
	writeJSON(w, set)
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(body)
}
