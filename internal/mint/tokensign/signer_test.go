package tokensign_test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

const (
	issuer   = "https://ferry.example.com"
	audience = "https://deploy.internal.example"
	subject  = "repo:acme/app:ref:refs/heads/main"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func mustKey(t testing.TB) *tokensign.Key {
	t.Helper()
	k, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSigner(t testing.TB, iss string, active *tokensign.Key, previous ...*tokensign.Key) *tokensign.Signer {
	t.Helper()
	s, err := tokensign.NewSigner(iss, active, previous...)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func publicKeys(s *tokensign.Signer) []crypto.PublicKey {
	var out []crypto.PublicKey
	for _, k := range s.JWKS().Keys {
		out = append(out, k.Key)
	}
	return out
}

func staticVerifier(s *tokensign.Signer, now time.Time) *oidc.IDTokenVerifier {
	return oidc.NewVerifier(s.Issuer(), &oidc.StaticKeySet{PublicKeys: publicKeys(s)}, &oidc.Config{
		ClientID:             audience,
		SupportedSigningAlgs: []string{oidc.ES256, oidc.ES384, oidc.ES512, oidc.RS256, oidc.EdDSA},
		Now:                  func() time.Time { return now },
	})
}

func TestSignedTokenVerifiesWithGoOIDCAndCarriesEveryClaim(t *testing.T) {
	keys := map[string]*tokensign.Key{"ES256": mustKey(t), "RS256": rsaSigningKey(t), "EdDSA": ed25519SigningKey(t)}
	for alg, key := range keys {
		t.Run("a token signed with "+alg+" verifies", func(t *testing.T) {
			s := mustSigner(t, issuer, key)
			tok, err := s.Sign(context.Background(), tokensign.Request{
				Audience: audience, Subject: subject, Lifetime: 5 * time.Minute, Now: t0.Add(300 * time.Millisecond),
				Claims: map[string]string{"repository": "acme/app", "ref": "refs/heads/main", "run_id": "123"},
			})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if want := t0.Add(5 * time.Minute); !tok.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %v, want %v (whole seconds, as exp says)", tok.ExpiresAt, want)
			}

			idt, err := staticVerifier(s, t0.Add(time.Minute)).Verify(context.Background(), tok.Token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			var c struct {
				Iss        string `json:"iss"`
				Sub        string `json:"sub"`
				Aud        string `json:"aud"`
				Iat        int64  `json:"iat"`
				Nbf        int64  `json:"nbf"`
				Exp        int64  `json:"exp"`
				Jti        string `json:"jti"`
				Repository string `json:"repository"`
				Ref        string `json:"ref"`
				RunID      string `json:"run_id"`
			}
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if c.Iss != issuer || c.Sub != subject || c.Aud != audience {
				t.Errorf("iss, sub, aud = %q, %q, %q", c.Iss, c.Sub, c.Aud)
			}
			if c.Iat != t0.Unix() || c.Nbf != t0.Unix() || c.Exp != t0.Add(5*time.Minute).Unix() {
				t.Errorf("iat, nbf, exp = %d, %d, %d; want %d, %d, %d", c.Iat, c.Nbf, c.Exp, t0.Unix(), t0.Unix(), t0.Add(5*time.Minute).Unix())
			}
			if c.Jti == "" || c.Jti != tok.ID {
				t.Errorf("jti = %q, Token.ID = %q: want equal and set", c.Jti, tok.ID)
			}
			if c.Repository != "acme/app" || c.Ref != "refs/heads/main" || c.RunID != "123" {
				t.Errorf("copied claims = %q, %q, %q", c.Repository, c.Ref, c.RunID)
			}

			jws, err := jose.ParseSignedCompact(tok.Token, []jose.SignatureAlgorithm{key.Alg})
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Protected
			if h.KeyID != key.ID || h.ExtraHeaders["typ"] != "JWT" || h.Algorithm != string(key.Alg) {
				t.Errorf("header kid=%q typ=%v alg=%s; want kid=%q typ=JWT alg=%s", h.KeyID, h.ExtraHeaders["typ"], h.Algorithm, key.ID, key.Alg)
			}
		})
	}
}

func TestSignedTokenIsRefusedWhenItShouldBe(t *testing.T) {
	s := mustSigner(t, issuer, mustKey(t))
	tok, err := s.Sign(context.Background(), tokensign.Request{Audience: audience, Subject: subject, Lifetime: 5 * time.Minute, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	stranger := mustSigner(t, issuer, mustKey(t))

	t.Run("after expiry it fails as expired", func(t *testing.T) {
		_, err := staticVerifier(s, t0.Add(5*time.Minute+time.Second)).Verify(context.Background(), tok.Token)
		var expired *oidc.TokenExpiredError
		if !errors.As(err, &expired) {
			t.Fatalf("err = %v, want *oidc.TokenExpiredError", err)
		}
	})
	t.Run("at the last second it still verifies", func(t *testing.T) {
		if _, err := staticVerifier(s, t0.Add(5*time.Minute)).Verify(context.Background(), tok.Token); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("another audience refuses it", func(t *testing.T) {
		v := oidc.NewVerifier(issuer, &oidc.StaticKeySet{PublicKeys: publicKeys(s)}, &oidc.Config{
			ClientID: "https://other.internal", SupportedSigningAlgs: []string{oidc.ES256}, Now: func() time.Time { return t0 },
		})
		if _, err := v.Verify(context.Background(), tok.Token); err == nil || !strings.Contains(err.Error(), "expected audience") {
			t.Fatalf("err = %v, want an audience mismatch", err)
		}
	})
	t.Run("keys of another signer do not verify it", func(t *testing.T) {
		if _, err := staticVerifier(stranger, t0).Verify(context.Background(), tok.Token); err == nil {
			t.Fatal("verified with an unrelated key")
		}
	})
}

func TestSignRefusesRequestsItCannotHonour(t *testing.T) {
	s := mustSigner(t, issuer, mustKey(t))
	base := tokensign.Request{Audience: audience, Subject: subject, Lifetime: 5 * time.Minute, Now: t0}
	with := func(f func(*tokensign.Request)) tokensign.Request { r := base; f(&r); return r }
	tests := []struct {
		name  string
		req   tokensign.Request
		field string
	}{
		{"a copied claim named iss would forge the issuer", with(func(r *tokensign.Request) { r.Claims = map[string]string{"iss": "https://evil"} }), "claims"},
		{"a copied claim named sub", with(func(r *tokensign.Request) { r.Claims = map[string]string{"sub": "x"} }), "claims"},
		{"a copied claim named aud", with(func(r *tokensign.Request) { r.Claims = map[string]string{"aud": "x"} }), "claims"},
		{"a copied claim named exp would extend the token", with(func(r *tokensign.Request) { r.Claims = map[string]string{"exp": "99999999999"} }), "claims"},
		{"a copied claim named nbf", with(func(r *tokensign.Request) { r.Claims = map[string]string{"nbf": "0"} }), "claims"},
		{"a copied claim named iat", with(func(r *tokensign.Request) { r.Claims = map[string]string{"iat": "0"} }), "claims"},
		{"a copied claim named jti would defeat replay checks", with(func(r *tokensign.Request) { r.Claims = map[string]string{"jti": "fixed"} }), "claims"},
		{"a claim with an empty name", with(func(r *tokensign.Request) { r.Claims = map[string]string{"": "x"} }), "claims"},
		{"no audience", with(func(r *tokensign.Request) { r.Audience = "" }), "audience"},
		{"no subject", with(func(r *tokensign.Request) { r.Subject = "" }), "subject"},
		{"no lifetime", with(func(r *tokensign.Request) { r.Lifetime = 0 }), "lifetime"},
		{"a negative lifetime", with(func(r *tokensign.Request) { r.Lifetime = -time.Minute }), "lifetime"},
		{"a lifetime over the cap", with(func(r *tokensign.Request) { r.Lifetime = tokensign.MaxLifetime + time.Second }), "lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			tok, err := s.Sign(context.Background(), tt.req)
			var re *grant.BadGrantError
			if tok != nil || !errors.As(err, &re) || re.Field != tt.field {
				t.Fatalf("Sign = %v, %v; want no token and a BadGrantError on %s", tok, err, tt.field)
			}
		})
	}
	t.Run("a canceled context is refused", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Sign(ctx, base); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestIsRegisteredClaim(t *testing.T) {
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} {
		if !tokensign.IsRegisteredClaim(name) {
			t.Errorf("%s is not reported as registered", name)
		}
	}
	for _, name := range []string{"repository", "ref", "ISS", "azp", ""} {
		if tokensign.IsRegisteredClaim(name) {
			t.Errorf("%q is reported as registered", name)
		}
	}
}

func TestEveryTokenGetsItsOwnID(t *testing.T) {
	s := mustSigner(t, issuer, mustKey(t))
	seen := map[string]bool{}
	for range 500 {
		// Same instant every time: uniqueness must come from randomness.
		tok, err := s.Sign(context.Background(), tokensign.Request{Audience: audience, Subject: subject, Lifetime: time.Minute, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.ID] {
			t.Fatalf("jti %s issued twice", tok.ID)
		}
		seen[tok.ID] = true
	}
}

func TestSignIsSafeForConcurrentUse(t *testing.T) {
	s := mustSigner(t, issuer, mustKey(t))
	v := staticVerifier(s, t0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				tok, err := s.Sign(context.Background(), tokensign.Request{Audience: audience, Subject: subject, Lifetime: time.Minute, Now: t0})
				if err == nil {
					_, err = v.Verify(context.Background(), tok.Token)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestJWKSHoldsPublicKeysOnly(t *testing.T) {
	s := mustSigner(t, issuer, mustKey(t), rsaSigningKey(t), ed25519SigningKey(t))
	set := s.JWKS()
	if len(set.Keys) != 3 {
		t.Fatalf("JWKS has %d keys, want 3", len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" || k.Algorithm == "" || k.KeyID == "" {
			t.Errorf("key %s: public=%v use=%q alg=%q", k.KeyID, k.IsPublic(), k.Use, k.Algorithm)
		}
	}
	for name, data := range map[string][]byte{"JWKSJSON": s.JWKSJSON(), "json.Marshal(JWKS())": mustMarshal(t, set)} {
		var parsed struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal(data, &parsed); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(parsed.Keys) != 3 {
			t.Errorf("%s has %d keys", name, len(parsed.Keys))
		}
		for _, k := range parsed.Keys {
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
				if _, ok := k[private]; ok {
					t.Errorf("%s: key %v has private member %q", name, k["kid"], private)
				}
			}
		}
	}
	// The JWKS the caller gets is a copy: changing it leaves the signer's alone.
	set.Keys[0].KeyID = "tampered"
	if s.JWKS().Keys[0].KeyID == "tampered" {
		t.Error("JWKS returned the signer's own slice")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiscoveryDocumentDescribesTheIssuer(t *testing.T) {
	active, old := mustKey(t), rsaSigningKey(t)
	s := mustSigner(t, issuer, active, old)
	var d struct {
		Issuer        string   `json:"issuer"`
		JWKSURI       string   `json:"jwks_uri"`
		Algs          []string `json:"id_token_signing_alg_values_supported"`
		ResponseTypes []string `json:"response_types_supported"`
		SubjectTypes  []string `json:"subject_types_supported"`
		Claims        []string `json:"claims_supported"`
	}
	if err := json.Unmarshal(s.DiscoveryJSON(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != issuer || d.JWKSURI != issuer+"/.well-known/jwks.json" {
		t.Errorf("issuer, jwks_uri = %q, %q", d.Issuer, d.JWKSURI)
	}
	if strings.Join(d.Algs, ",") != "ES256,RS256" {
		t.Errorf("algs = %v, want the active key's first, then the previous key's", d.Algs)
	}
	if strings.Join(d.ResponseTypes, ",") != "id_token" || strings.Join(d.SubjectTypes, ",") != "public" {
		t.Errorf("response types %v, subject types %v", d.ResponseTypes, d.SubjectTypes)
	}
	if strings.Join(d.Claims, ",") != "iss,sub,aud,exp,nbf,iat,jti" {
		t.Errorf("claims_supported = %v", d.Claims)
	}
}

func TestNewSignerRefusesBadConfiguration(t *testing.T) {
	k := mustKey(t)
	forged := *k
	forged.ID = "chosen-by-hand"
	tests := []struct {
		name     string
		issuer   string
		active   *tokensign.Key
		previous []*tokensign.Key
		want     string
	}{
		{"an issuer over plain http to a public host", "http://ferry.example.com", k, nil, "https"},
		{"an issuer with a query", "https://ferry.example.com?x=1", k, nil, "query"},
		{"an issuer with a fragment", "https://ferry.example.com#a", k, nil, "fragment"},
		{"an issuer without a host", "https:///path", k, nil, "URL like"},
		{"an issuer that is not a URL", "ferry", k, nil, "https"},
		{"an empty issuer", "", k, nil, "URL like"},
		{"no active key", issuer, nil, nil, "no active key"},
		{"the same key as active and previous", issuer, k, []*tokensign.Key{k}, "given twice"},
		{"a key whose kid is not its thumbprint", issuer, &forged, nil, "does not match"},
		{"a missing previous key", issuer, k, []*tokensign.Key{nil}, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			_, err := tokensign.NewSigner(tt.issuer, tt.active, tt.previous...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:9", "https://ferry.example.com/tenant-a"} {
		if _, err := tokensign.NewSigner(ok, k); err != nil {
			t.Errorf("issuer %q refused: %v", ok, err)
		}
	}
}

// A relying party discovers Ferry over HTTP, as it would any OIDC issuer.
// During a rotation, tokens from the previous key keep verifying while the
// new key signs.
func TestRelyingPartyVerifiesThroughDiscoveryAcrossAKeyRotation(t *testing.T) {
	var mu sync.Mutex
	var serving *tokensign.Signer
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(serving.DiscoveryJSON())
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(serving.JWKSJSON())
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	iss := srv.URL

	oldKey, newKey := rsaSigningKey(t), mustKey(t)
	before := mustSigner(t, iss, oldKey)
	after := mustSigner(t, iss, newKey, oldKey)
	forgotten := mustSigner(t, iss, newKey) // the old key dropped too soon
	req := tokensign.Request{Audience: audience, Subject: subject, Lifetime: 10 * time.Minute}
	ctx := context.Background()
	oldTok, err := before.Sign(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	newTok, err := after.Sign(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	verify := func(s *tokensign.Signer, raw string) error {
		mu.Lock()
		serving = s
		mu.Unlock()
		provider, err := oidc.NewProvider(ctx, iss)
		if err != nil {
			t.Fatalf("NewProvider: %v", err)
		}
		_, err = provider.Verifier(&oidc.Config{ClientID: audience}).Verify(ctx, raw)
		return err
	}
	if err := verify(before, oldTok.Token); err != nil {
		t.Errorf("before rotation, the old key's token: %v", err)
	}
	if err := verify(after, oldTok.Token); err != nil {
		t.Errorf("during rotation, the old key's token: %v", err)
	}
	if err := verify(after, newTok.Token); err != nil {
		t.Errorf("during rotation, the new key's token: %v", err)
	}
	if err := verify(forgotten, oldTok.Token); err == nil {
		t.Errorf("with the old key no longer published, its token still verified")
	}
}
