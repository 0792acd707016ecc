package identity

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/devissuer"
)

func TestNewPoolDoesNotContactIssuers(t *testing.T) {
	e := newEnv(t, Options{})
	down := startIssuer(t, devissuer.Options{})
	down.Close()
	if _, err := NewPool([]IssuerConfig{{Name: "down", IssuerURL: down.URL(), Audiences: []string{"ferry"}}}, Options{}); err != nil {
		t.Fatalf("NewPool with an unreachable issuer: %v", err)
	}
	if n := e.github.JWKSRequests() + e.gitlab.JWKSRequests(); n != 0 {
		t.Errorf("JWKS requests after NewPool = %d, want 0", n)
	}
}

func TestKeysAreCachedAcrossTokens(t *testing.T) {
	e := newEnv(t, Options{})
	for range 5 {
		if _, err := e.pool.Verify(context.Background(), sign(t, e.github, sample(t, "github-push-main"))); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.github.JWKSRequests(); n != 1 {
		t.Errorf("JWKS requests for 5 tokens = %d, want 1", n)
	}
}

func TestKeyRotationIsPickedUpOnUnknownKid(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	old := sign(t, e.github, sample(t, "github-push-main"))
	if _, err := e.pool.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := e.github.RotateKey(); err != nil {
		t.Fatal(err)
	}
	rotated := sign(t, e.github, sample(t, "github-push-main"))

	// Within MinRefresh of the first fetch the new kid cannot be fetched.
	_, err := e.pool.Verify(ctx, rotated)
	mustTokenError(t, err, "is not among the keys")
	if n := e.github.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS requests within MinRefresh = %d, want 1", n)
	}

	e.clock.Advance(DefaultMinRefresh)
	id, err := e.pool.Verify(ctx, rotated)
	if err != nil {
		t.Fatalf("token with the rotated key after MinRefresh: %v", err)
	}
	if id.Issuer != "github" || e.github.JWKSRequests() != 2 {
		t.Errorf("issuer = %q, JWKS requests = %d; want github and 2", id.Issuer, e.github.JWKSRequests())
	}

	// The old key was dropped from the JWKS, so its tokens stop verifying.
	_, err = e.pool.Verify(ctx, old)
	mustTokenError(t, err, "is not among the keys")
}

func TestAFloodOfUnknownKidsFetchesAtMostOncePerMinRefresh(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	if err := e.pool.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	bogus := func(t *testing.T, i int) string {
		raw, err := e.github.SignWith(e.github.Key(), "RS256", "bogus-"+strings.Repeat("k", i%7)+string(rune('a'+i%26)), sample(t, "github-push-main"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tokens := make([]string, 200)
	for i := range tokens {
		tokens[i] = bogus(t, i)
	}
	flood := func() {
		var wg sync.WaitGroup
		errs := make([]error, len(tokens))
		for i, raw := range tokens {
			wg.Go(func() { _, errs[i] = e.pool.Verify(ctx, raw) })
		}
		wg.Wait()
		for _, err := range errs {
			mustTokenError(t, err, "is not among the keys")
		}
	}

	e.clock.Advance(DefaultMinRefresh)
	flood()
	if n := e.github.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS requests after a flood of 200 unknown kids = %d, want 2 (warm-up plus one coalesced refresh)", n)
	}
	flood()
	if n := e.github.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS requests after a second flood within MinRefresh = %d, want still 2", n)
	}
	e.clock.Advance(DefaultMinRefresh)
	flood()
	if n := e.github.JWKSRequests(); n != 3 {
		t.Fatalf("JWKS requests after a flood in the next MinRefresh window = %d, want 3", n)
	}
	if _, err := e.pool.Verify(ctx, sign(t, e.github, sample(t, "github-push-main"))); err != nil {
		t.Errorf("a good token after the floods: %v", err)
	}
}

func TestAnIssuerDownWithNoCachedKeysIsUnavailable(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	raw := sign(t, e.gitlab, sample(t, "gitlab-protected-deploy"))
	e.gitlab.SetDown(true)

	_, err := e.pool.Verify(ctx, raw)
	ue := mustUnavailable(t, err, "gitlab")
	if ue.RetryAfter > DefaultMinRefresh+time.Second {
		t.Errorf("RetryAfter = %s, want at most MinRefresh", ue.RetryAfter)
	}
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("err = %v, want the issuer's 503 in the detail", err)
	}

	// Retrying at once neither hits the issuer nor accepts the token.
	_, err = e.pool.Verify(ctx, raw)
	mustUnavailable(t, err, "gitlab")
	if n := e.gitlab.JWKSRequests(); n > 1 {
		t.Errorf("JWKS requests = %d, want at most 1 within MinRefresh", n)
	}

	e.gitlab.SetDown(false)
	e.clock.Advance(DefaultMinRefresh)
	if _, err := e.pool.Verify(ctx, raw); err != nil {
		t.Errorf("after the issuer is back: %v", err)
	}
}

func TestAnUnreachableIssuerIsUnavailable(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	raw := sign(t, iss, sample(t, "github-push-main"))
	iss.Close()
	pool, err := NewPool([]IssuerConfig{{Name: "github", IssuerURL: iss.URL(), Audiences: []string{"ferry"}}},
		Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pool.Verify(context.Background(), raw)
	if id != nil {
		t.Fatalf("Verify returned %+v with the issuer unreachable", id)
	}
	mustUnavailable(t, err, "github")
}

func TestAnIssuerDownWithCachedKeysStillVerifies(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	if err := e.pool.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	e.github.SetDown(true)
	if _, err := e.pool.Verify(ctx, sign(t, e.github, sample(t, "github-push-main"))); err != nil {
		t.Fatalf("Verify with cached keys while the issuer is down: %v", err)
	}

	// Past the key max age a background refresh fails; the last good keys stay.
	e.clock.Advance(MaxRefreshInterval + time.Minute)
	later := func() string {
		now := e.clock.Now()
		return sign(t, e.github, with(sample(t, "github-push-main"), map[string]any{
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}))
	}
	for range 3 {
		if _, err := e.pool.Verify(ctx, later()); err != nil {
			t.Fatalf("Verify with stale cached keys while the issuer is down: %v", err)
		}
	}
	if err := e.pool.Warm(ctx); err == nil {
		t.Error("Warm with the issuer down returned nil, want the refresh failure")
	}
	if err := e.pool.Ready(ctx); err != nil {
		t.Errorf("Ready with cached keys: %v", err)
	}

	// A kid the broker has never seen cannot be judged while the issuer is down.
	e.clock.Advance(DefaultMinRefresh)
	unknown, err := e.github.SignWith(e.github.Key(), "RS256", "new-kid", sample(t, "github-push-main"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.pool.Verify(ctx, unknown)
	mustUnavailable(t, err, "github")
}

func TestReadyFetchesMissingKeysOnce(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	if err := e.pool.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := e.pool.Ready(ctx); err != nil {
		t.Fatalf("Ready again: %v", err)
	}
	if a, b := e.github.JWKSRequests(), e.gitlab.JWKSRequests(); a != 1 || b != 1 {
		t.Errorf("JWKS requests = %d, %d; want 1 each", a, b)
	}
}

func TestReadyNamesTheIssuerWithoutKeys(t *testing.T) {
	e := newEnv(t, Options{})
	e.gitlab.SetDown(true)
	err := e.pool.Ready(context.Background())
	mustUnavailable(t, err, "gitlab")
	if strings.Contains(err.Error(), `"github"`) {
		t.Errorf("err = %v, want only gitlab named", err)
	}
}

func TestReadinessHoldsWhileAnyIssuerCanVerify(t *testing.T) {
	e := newEnv(t, Options{})
	e.gitlab.SetDown(true)
	problems, err := e.pool.Readiness(context.Background())
	if err != nil {
		t.Fatalf("one issuer down: err = %v, want ready with a problem", err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "gitlab") {
		t.Errorf("problems = %q, want gitlab named", problems)
	}

	both := newEnv(t, Options{})
	both.gitlab.SetDown(true)
	both.github.SetDown(true)
	if _, err := both.pool.Readiness(context.Background()); err == nil {
		t.Error("every issuer down: ready, want an error")
	}
}

func TestDiscoveryMustNameTheConfiguredIssuer(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	// Configured with a trailing slash the issuer does not use: discovery
	// answers for iss.URL(), which is not the configured issuer.
	configured := iss.URL() + "/"
	pool, err := NewPool([]IssuerConfig{{Name: "github", IssuerURL: configured, Audiences: []string{"ferry"}}},
		Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, iss, with(sample(t, "github-push-main"), map[string]any{"iss": configured}))
	_, err = pool.Verify(context.Background(), raw)
	mustUnavailable(t, err, "github")
	if !strings.Contains(err.Error(), "names issuer") {
		t.Errorf("err = %v, want the discovery issuer mismatch", err)
	}
	if n := iss.JWKSRequests(); n != 0 {
		t.Errorf("JWKS requests = %d, want 0 after a mismatched discovery", n)
	}
}

func TestAJWKSWithoutPublicSigningKeysIsUnusable(t *testing.T) {
	bodies := map[string]string{
		"a symmetric key": `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1","alg":"HS256"}]}`,
		"an encryption key": `{"keys":[{"kty":"RSA","use":"enc","kid":"k1","e":"AQAB",` +
			`"n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}]}`,
		"no keys at all": `{"keys":[]}`,
		"not JSON":       `<html>`,
	}
	for name, body := range bodies {
		t.Run("a JWKS holding "+name+" leaves the issuer unavailable", func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Write([]byte(body))
			}))
			defer srv.Close()
			pool, err := NewPool([]IssuerConfig{{Name: "odd", IssuerURL: srv.URL, Audiences: []string{"ferry"}, JWKSURL: srv.URL + "/keys"}},
				Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			mustUnavailable(t, pool.Ready(context.Background()), "odd")
		})
	}
}

func TestVerifyHonoursCancellationWhileWaitingForKeys(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		http.Error(w, "slow", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	defer close(release)
	iss := startIssuer(t, devissuer.Options{})
	pool, err := NewPool([]IssuerConfig{{Name: "slow", IssuerURL: iss.URL(), Audiences: []string{"ferry"}, JWKSURL: srv.URL}},
		Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = pool.Verify(ctx, sign(t, iss, sample(t, "github-push-main")))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
