package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, never
// accept, and always fail with one of the two typed errors. No seed is a
// valid token, and no mutation can produce an RSA signature.
func FuzzVerify(f *testing.F) {
	e := newEnv(f, Options{})
	ctx := context.Background()
	if err := e.pool.Warm(ctx); err != nil {
		f.Fatal(err)
	}
	claims := completeClaims(f, e.github, e.clock.Now())
	good := sign(f, e.github, sample(f, "github-push-main"))
	parts := strings.Split(good, ".")
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	forged, err := e.github.SignWith(other, "RS256", e.github.KeyID(), claims)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"", ".", "..", "...", "a.b.c", "not a token",
		noneToken(f, "", claims),
		hmacToken(f, "HS256", e.github.KeyID(), []byte("secret"), claims),
		forged,
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + segment(f, map[string]any{"iss": e.github.URL()}) + "." + parts[2],
		parts[0] + ".." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[2],
		`{"payload":"e30","signatures":[]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := e.pool.Verify(ctx, raw)
		if err == nil {
			t.Fatalf("Verify accepted a fuzzed token: %+v", id)
		}
		if id != nil {
			t.Fatalf("Verify returned an identity with error %v", err)
		}
		var te *TokenError
		var ue *UnavailableError
		if !errors.As(err, &te) && !errors.As(err, &ue) {
			t.Fatalf("err = %v (%T), want a TokenError or UnavailableError", err, err)
		}
		if te != nil && te.Reason == "" {
			t.Fatalf("TokenError without a reason: %v", err)
		}
	})
}
