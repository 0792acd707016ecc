package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
)

// newClock starts at the real time, so tokens the test issuers sign verify.
func newClock() *fakeclock.Clock { return fakeclock.At(time.Now()) }

func startIssuer(t testing.TB, opts devissuer.Options) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.Start(opts)
	if err != nil {
		t.Fatalf("start dev issuer: %v", err)
	}
	t.Cleanup(func() { iss.Close() })
	return iss
}

// env is two trusted issuers on loopback, GitHub-shaped ("github") and
// GitLab-shaped ("gitlab"), behind one Pool with a settable clock.
type env struct {
	github, gitlab *devissuer.Issuer
	pool           *Pool
	clock          *fakeclock.Clock
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	e := &env{
		github: startIssuer(t, devissuer.Options{Flavor: devissuer.GitHub}),
		gitlab: startIssuer(t, devissuer.Options{Flavor: devissuer.GitLab}),
		clock:  newClock(),
	}
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Claims == nil {
		opts.Claims = registry.Platforms()
	}
	pool, err := NewPool([]IssuerConfig{
		{Name: "github", IssuerURL: e.github.URL(), Audiences: []string{"ferry"}},
		{Name: "gitlab", IssuerURL: e.gitlab.URL(), Audiences: []string{"ferry", "https://ferry.example"}},
	}, opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	e.pool = pool
	return e
}

func sample(t testing.TB, name string) map[string]any {
	t.Helper()
	c, err := devissuer.SampleClaims(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// with returns a copy of claims with the given changes; a nil value
// removes the claim from the signed token.
func with(claims map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(claims)+len(changes))
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range changes {
		out[k] = v
	}
	return out
}

func sign(t testing.TB, iss *devissuer.Issuer, claims map[string]any) string {
	t.Helper()
	raw, err := iss.Sign(claims)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return raw
}

// completeClaims is a GitHub sample with every registered claim set, for
// tokens built by hand rather than by the dev issuer.
func completeClaims(t testing.TB, iss *devissuer.Issuer, now time.Time) map[string]any {
	return with(sample(t, "github-push-main"), map[string]any{
		"iss": iss.URL(),
		"iat": now.Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
		"jti": "hand-built",
	})
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// noneToken is an unsigned token, `alg: none` (RFC 7519 section 6).
func noneToken(t testing.TB, kid string, claims map[string]any) string {
	header := map[string]any{"alg": "none", "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	return segment(t, header) + "." + segment(t, claims) + "."
}

// hmacToken signs with HMAC using secret, as in the algorithm confusion
// attack where the secret is the issuer's public key.
func hmacToken(t testing.TB, alg, kid string, secret []byte, claims map[string]any) string {
	t.Helper()
	var h func() hash.Hash
	switch alg {
	case "HS256":
		h = sha256.New
	case "HS384":
		h = sha512.New384
	case "HS512":
		h = sha512.New
	default:
		t.Fatalf("hmacToken: unknown alg %s", alg)
	}
	input := segment(t, map[string]any{"alg": alg, "typ": "JWT", "kid": kid}) + "." + segment(t, claims)
	mac := hmac.New(h, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func mustTokenError(t testing.TB, err error, reason string) *TokenError {
	t.Helper()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T), want a *TokenError", err, err)
	}
	if !strings.Contains(te.Reason, reason) {
		t.Fatalf("reason = %q, want it to mention %q", te.Reason, reason)
	}
	return te
}

func mustUnavailable(t testing.TB, err error, issuer string) *UnavailableError {
	t.Helper()
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want an *UnavailableError", err, err)
	}
	if ue.Issuer != issuer {
		t.Errorf("UnavailableError.Issuer = %q, want %q", ue.Issuer, issuer)
	}
	if ue.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %s, want a positive delay", ue.RetryAfter)
	}
	return ue
}
