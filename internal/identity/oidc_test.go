package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
)

// Verify no longer runs go-oidc's IDTokenVerifier per token; it repeats
// its checks. These tests keep go-oidc as the reference: every token
// go-oidc refuses (configured as Ferry configured it before) Ferry refuses
// too, and where both accept they read the same registered claims.

// signRaw signs payload bytes exactly as given, so a test can send JSON no
// encoder would write (duplicate or case-variant keys, trailing data).
func signRaw(t testing.TB, key crypto.Signer, alg jose.SignatureAlgorithm, kid string, payload []byte) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rawPayload is m as a JSON object with members appended verbatim, in
// order, after m's own.
func rawPayload(t testing.TB, m map[string]any, members ...string) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, mem := range members {
		s = strings.TrimSuffix(s, "}") + "," + mem + "}"
	}
	return []byte(s)
}

// refIssuer is one issuer with an ES256 key (cheap to sign with, so the
// fuzz target signs every input) behind both a Pool and the go-oidc
// verifier Ferry used to run.
type refIssuer struct {
	url   string
	key   *ecdsa.PrivateKey
	kid   string
	clock *fakeclock.Clock
	pool  *Pool
	oidc  *oidc.IDTokenVerifier
}

func newRefIssuer(t testing.TB) *refIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r := &refIssuer{url: "https://ci.example", key: key, kid: "ref-1", clock: newClock()}
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: r.kid, Algorithm: string(jose.ES256), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	t.Cleanup(srv.Close)
	if r.pool, err = NewPool([]IssuerConfig{{Name: "ref", IssuerURL: r.url, Audiences: []string{"ferry"}, JWKSURL: srv.URL + "/keys"}},
		Options{Now: r.clock.Now, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	algs := make([]string, len(asymmetricAlgs))
	for i, a := range asymmetricAlgs {
		algs[i] = string(a)
	}
	r.oidc = oidc.NewVerifier(r.url, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&key.PublicKey}}, &oidc.Config{
		SupportedSigningAlgs: algs, SkipClientIDCheck: true, SkipExpiryCheck: true, Now: r.clock.Now,
	})
	return r
}

func (r *refIssuer) claims(t testing.TB) map[string]any {
	now := r.clock.Now()
	return with(sample(t, "github-push-main"), map[string]any{
		"iss": r.url, "iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "ref-jti",
	})
}

// compare verifies one payload both ways and fails the test where Ferry
// accepts what go-oidc refuses or the two read different claims. It
// returns both outcomes.
func (r *refIssuer) compare(t testing.TB, payload []byte) (ours *Identity, oursErr error, ref *oidc.IDToken, refErr error) {
	t.Helper()
	raw := signRaw(t, r.key, jose.ES256, r.kid, payload)
	ours, oursErr = r.pool.Verify(context.Background(), raw)
	ref, refErr = r.oidc.Verify(context.Background(), raw)
	if oursErr != nil {
		return
	}
	if refErr != nil {
		t.Fatalf("Verify accepted a token go-oidc refuses (%v); payload %s", refErr, payload)
	}
	c := ours.Claims
	if c.Issuer != ref.Issuer || c.Subject != ref.Subject || strings.Join(c.Audience, "\x00") != strings.Join(ref.Audience, "\x00") ||
		c.Expiry.Unix() != ref.Expiry.Unix() || c.IssuedAt.Unix() != ref.IssuedAt.Unix() {
		t.Fatalf("Verify and go-oidc read different claims: iss %q/%q sub %q/%q aud %q/%q exp %d/%d iat %d/%d; payload %s",
			c.Issuer, ref.Issuer, c.Subject, ref.Subject, c.Audience, ref.Audience, c.Expiry.Unix(), ref.Expiry.Unix(),
			c.IssuedAt.Unix(), ref.IssuedAt.Unix(), payload)
	}
	return
}

func TestVerifyRefusesEveryTokenGoOIDCRefuses(t *testing.T) {
	r := newRefIssuer(t)
	base := func(changes map[string]any, members ...string) []byte {
		return rawPayload(t, with(r.claims(t), changes), members...)
	}
	tests := []struct {
		name       string
		payload    []byte
		refRefuses bool   // what go-oidc does, asserted so each row tests what it says
		reason     string // what Ferry's refusal must mention; "" means Ferry accepts
	}{
		{"a GitHub-shaped token is accepted by both", base(nil), false, ""},
		{"a string nonce and at_hash are accepted by both", base(map[string]any{"nonce": "n", "at_hash": "h"}), false, ""},
		{"whitespace after the object is accepted by both", append(base(nil), " \n"...), false, ""},
		{"a numeric nonce is refused", base(map[string]any{"nonce": 5}), true, `claim "nonce" must be a string, got number`},
		{"an at_hash list is refused", base(map[string]any{"at_hash": []string{"h"}}), true, `claim "at_hash" must be a string, got list`},
		{"a distributed claim without a source is refused", base(map[string]any{"_claim_names": map[string]any{"groups": "src1"}}), true, `"_claim_names" (distributed claims) is not supported`},
		{"a distributed claim naming an empty source is refused", base(map[string]any{"_claim_names": map[string]any{"groups": ""}}), true, "distributed claims"},
		{"claim sources of the wrong shape are refused", base(map[string]any{"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": 5}}}), true, "distributed claims"},
		{"a null exp is refused", base(map[string]any{"exp": nil}), true, `claim "exp" must be a number, got null`},
		{"a null iat is refused", base(map[string]any{"iat": nil}), true, `claim "iat" must be a number, got null`},
		{"a boolean iat is refused", base(map[string]any{"iat": true}), true, `claim "iat" must be a number`},
		{"an exp sent as a numeric string is refused (go-oidc accepted it)", base(map[string]any{"exp": "4102444800"}), false, `claim "exp" must be a number, got string`},
		{"a null nbf is refused (go-oidc accepted it)", base(map[string]any{"nbf": nil}), false, `claim "nbf" must be a number, got null`},
		{"an object nbf is refused", base(map[string]any{"nbf": map[string]any{}}), true, `claim "nbf" must be a number`},
		{"a numeric aud is refused", base(map[string]any{"aud": 5}), true, `claim "aud" must be a string or list of strings`},
		{"an aud list holding a number is refused", base(map[string]any{"aud": []any{"ferry", 5}}), true, `claim "aud" must be a string or list of strings`},
		{"a numeric sub is refused", base(map[string]any{"sub": 5}), true, `claim "sub" must be a string`},
		{"a numeric iss is refused", base(map[string]any{"iss": 5}), true, "string iss"},
		{"another issuer's iss is refused", base(map[string]any{"iss": "https://other.example"}), true, "is not a configured issuer"},
		{"an ISS after iss, naming another issuer, is refused", base(nil, `"ISS":"https://other.example"`), true, `claim "ISS" differs from the registered claim "iss" only in case`},
		{"a sub spelt with a long s after sub is refused", base(nil, `"ſub":5`), true, `claim "ſub" differs from the registered claim "sub" only in case`},
		{"an Exp after exp is refused", base(nil, `"Exp":"soon"`), true, `registered claim "exp"`},
		{"data after the object is refused", append(base(nil), `{"iss":"x"}`...), true, "not one well-formed JSON object"},
		{"a JSON list is refused", []byte(`[1,2]`), true, "not one well-formed JSON object"},
		{"JSON null is refused", []byte(`null`), true, "not one well-formed JSON object"},
		{"a JSON string is refused", []byte(`"https://ci.example"`), true, "not one well-formed JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err, _, refErr := r.compare(t, tt.payload)
			if (refErr != nil) != tt.refRefuses {
				t.Fatalf("go-oidc err = %v, want refused %v: the row does not test what it says", refErr, tt.refRefuses)
			}
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			mustTokenError(t, err, tt.reason)
		})
	}
}

// Ferry refuses a case variant of a registered claim even where go-oidc
// happened to accept it (the variant came first and the real claim won).
func TestVerifyRefusesCaseVariantsGoOIDCAccepted(t *testing.T) {
	r := newRefIssuer(t)
	m := r.claims(t)
	delete(m, "iss")
	payload := rawPayload(t, m, `"ISS":"https://other.example"`, `"iss":"https://ci.example"`)
	_, err, _, refErr := r.compare(t, payload)
	if refErr != nil {
		t.Fatalf("go-oidc refused (%v); the test expects it to accept", refErr)
	}
	mustTokenError(t, err, `claim "ISS" differs from the registered claim "iss" only in case`)
}

func TestVerifyReadsOneIssForKeysAndCheck(t *testing.T) {
	e := newEnv(t, Options{})
	now := e.clock.Now()
	m := completeClaims(t, e.github, now)
	delete(m, "iss")
	byGitHub := func(payload []byte) string { return signRaw(t, e.github.Key(), jose.RS256, e.github.KeyID(), payload) }

	// A name given twice is read two ways by two readers (encoding/json
	// takes the last, others the first): such a token is refused before
	// any key is chosen, whichever issuer each copy names.
	t.Run("a token with iss twice is refused", func(t *testing.T) {
		for _, pair := range [][2]string{{e.gitlab.URL(), e.github.URL()}, {e.github.URL(), e.gitlab.URL()}} {
			raw := byGitHub(rawPayload(t, m, jsonMember(t, "iss", pair[0]), jsonMember(t, "iss", pair[1])))
			_, err := e.pool.Verify(context.Background(), raw)
			mustTokenError(t, err, `duplicate object member name "iss"`)
		}
	})
	t.Run("a token with any claim twice is refused", func(t *testing.T) {
		raw := byGitHub(rawPayload(t, m, jsonMember(t, "iss", e.github.URL()), jsonMember(t, "ref", "refs/heads/dev")))
		_, err := e.pool.Verify(context.Background(), raw)
		mustTokenError(t, err, `duplicate object member name "ref"`)
	})
	t.Run("an iss and an Iss naming two configured issuers are refused", func(t *testing.T) {
		raw := byGitHub(rawPayload(t, m, jsonMember(t, "Iss", e.gitlab.URL()), jsonMember(t, "iss", e.github.URL())))
		_, err := e.pool.Verify(context.Background(), raw)
		mustTokenError(t, err, `claim "Iss" differs from the registered claim "iss" only in case`)
	})
	t.Run("a claim type error is reported only once the signature verifies", func(t *testing.T) {
		m := maps.Clone(m)
		delete(m, "repository")
		forged := signRaw(t, e.gitlab.Key(), jose.RS256, e.github.KeyID(), rawPayload(t, m, jsonMember(t, "iss", e.github.URL()), `"repository":5`))
		_, err := e.pool.Verify(context.Background(), forged)
		mustTokenError(t, err, "signature does not verify")
		var te *claims.TypeError
		genuine := byGitHub(rawPayload(t, m, jsonMember(t, "iss", e.github.URL()), `"repository":5`))
		_, err = e.pool.Verify(context.Background(), genuine)
		if mustTokenError(t, err, `claim "repository" must be a string`); !errors.As(err, &te) {
			t.Errorf("err = %v, want a *claims.TypeError", err)
		}
	})
}

func jsonMember(t testing.TB, name, value string) string {
	t.Helper()
	v, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	return `"` + name + `":` + string(v)
}

// FuzzVerifyAgreesWithGoOIDC signs every input as a token payload with the
// issuer's real key, so mutations reach the claim checks: Verify must never
// accept what go-oidc refuses, nor read other registered claims.
func FuzzVerifyAgreesWithGoOIDC(f *testing.F) {
	r := newRefIssuer(f)
	c := r.claims(f)
	for _, seed := range [][]byte{
		rawPayload(f, c),
		rawPayload(f, c, `"nonce":5`),
		rawPayload(f, c, `"ISS":"https://ci.example"`),
		rawPayload(f, c, `"_claim_names":{"a":"b"}`),
		rawPayload(f, c, `"aud":["ferry",1]`),
		rawPayload(f, c, `"exp":null`),
		rawPayload(f, c, `"iss":"https://ci.example"`),
		[]byte(`{"iss":"https://ci.example"}`),
		[]byte(`null`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		id, err, _, _ := r.compare(t, payload)
		if err == nil && id == nil {
			t.Fatal("Verify returned neither an identity nor an error")
		}
	})
}
