package devissuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func start(t *testing.T, opts Options) *Issuer {
	t.Helper()
	iss, err := Start(opts)
	if err != nil {
		t.Fatalf("Start(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := iss.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return iss
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("decode %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

type discovery struct {
	Issuer  string   `json:"issuer"`
	JWKSURI string   `json:"jwks_uri"`
	Algs    []string `json:"id_token_signing_alg_values_supported"`
}

func TestIssuerServesDiscoveryAndJWKSWhereThePlatformDoes(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		jwksPath string
	}{
		{"github flavor publishes keys at /.well-known/jwks", Options{}, "/.well-known/jwks"},
		{"gitlab flavor publishes keys at /oauth/discovery/keys", Options{Flavor: GitLab}, "/oauth/discovery/keys"},
		{"a GHES-style prefix is part of the issuer and every path", Options{PathPrefix: "/_services/token"}, "/_services/token/.well-known/jwks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := start(t, tt.opts)
			if !strings.HasPrefix(iss.URL(), "http://127.0.0.1:") || !strings.HasSuffix(iss.URL(), tt.opts.PathPrefix) {
				t.Fatalf("URL() = %q, want http://127.0.0.1:PORT%s", iss.URL(), tt.opts.PathPrefix)
			}
			var doc discovery
			if code := getJSON(t, iss.URL()+"/.well-known/openid-configuration", &doc); code != http.StatusOK {
				t.Fatalf("discovery status %d", code)
			}
			if doc.Issuer != iss.URL() {
				t.Errorf("discovery issuer = %q, want %q", doc.Issuer, iss.URL())
			}
			if !strings.HasSuffix(doc.JWKSURI, tt.jwksPath) || doc.JWKSURI != iss.JWKSURL() {
				t.Errorf("jwks_uri = %q, JWKSURL() = %q, want a URL ending in %q", doc.JWKSURI, iss.JWKSURL(), tt.jwksPath)
			}
			if len(doc.Algs) != 1 || doc.Algs[0] != "RS256" {
				t.Errorf("signing algs = %v, want [RS256]", doc.Algs)
			}
			var set jose.JSONWebKeySet
			if code := getJSON(t, doc.JWKSURI, &set); code != http.StatusOK {
				t.Fatalf("jwks status %d", code)
			}
			if len(set.Keys) != 1 || set.Keys[0].KeyID != iss.KeyID() || set.Keys[0].Algorithm != "RS256" || !set.Keys[0].IsPublic() {
				t.Fatalf("jwks = %+v, want the one public RS256 key with kid %q", set.Keys, iss.KeyID())
			}
			if iss.JWKSRequests() != 1 {
				t.Errorf("JWKSRequests() = %d, want 1", iss.JWKSRequests())
			}
		})
	}
}

func TestStartRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"an unknown flavor", Options{Flavor: "bitbucket"}},
		{"a non-loopback listen address", Options{Addr: "0.0.0.0:0"}},
		{"a path prefix without a leading slash", Options{PathPrefix: "token"}},
		{"a path prefix with a trailing slash", Options{PathPrefix: "/token/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := Start(tt.opts)
			if err == nil {
				iss.Close()
				t.Fatalf("Start(%+v) succeeded, want an error", tt.opts)
			}
		})
	}
}

func TestSignFillsRegisteredClaimsPerFlavor(t *testing.T) {
	tests := []struct {
		flavor   Flavor
		nbfDelta int64
		lifetime int64
	}{
		{GitHub, -600, 300},
		{GitLab, 0, 3600},
	}
	for _, tt := range tests {
		t.Run(string(tt.flavor)+" tokens carry the platform's lifetime and nbf", func(t *testing.T) {
			iss := start(t, Options{Flavor: tt.flavor})
			raw, err := iss.Sign(map[string]any{"aud": "ferry", "sub": "x"})
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			if kid := jws.Signatures[0].Header.KeyID; kid != iss.KeyID() {
				t.Errorf("kid = %q, want %q", kid, iss.KeyID())
			}
			payload, err := jws.Verify(&iss.Key().PublicKey)
			if err != nil {
				t.Fatalf("signature does not verify with the issuer key: %v", err)
			}
			var c struct {
				Iss, Jti, Aud string
				Iat, Nbf, Exp int64
			}
			if err := json.Unmarshal(payload, &c); err != nil {
				t.Fatal(err)
			}
			if c.Iss != iss.URL() || c.Aud != "ferry" || c.Jti == "" {
				t.Errorf("claims = %+v, want iss %q, aud ferry and a jti", c, iss.URL())
			}
			if c.Nbf-c.Iat != tt.nbfDelta || c.Exp-c.Iat != tt.lifetime {
				t.Errorf("nbf-iat = %d, exp-iat = %d; want %d and %d", c.Nbf-c.Iat, c.Exp-c.Iat, tt.nbfDelta, tt.lifetime)
			}
			if d := time.Since(time.Unix(c.Iat, 0)); d < -time.Second || d > time.Minute {
				t.Errorf("iat is %s away from now", d)
			}
		})
	}
}

func TestSignKeepsGivenClaimsAndLeavesOutNilOnes(t *testing.T) {
	iss := start(t, Options{})
	raw, err := iss.Sign(map[string]any{"iss": "https://elsewhere", "exp": 42, "jti": nil})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	if c["iss"] != "https://elsewhere" || c["exp"] != float64(42) {
		t.Errorf("iss = %v, exp = %v; want the given values", c["iss"], c["exp"])
	}
	if _, ok := c["jti"]; ok {
		t.Errorf("jti = %v, want it left out", c["jti"])
	}
}

func TestSignWithUsesTheGivenKeyAlgorithmAndKid(t *testing.T) {
	iss := start(t, Options{})
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := iss.SignWith(ec, "ES256", "other-kid", map[string]any{"aud": "ferry"})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if jws.Signatures[0].Header.KeyID != "other-kid" {
		t.Errorf("kid = %q, want other-kid", jws.Signatures[0].Header.KeyID)
	}
	if _, err := jws.Verify(&ec.PublicKey); err != nil {
		t.Errorf("does not verify with the given key: %v", err)
	}
	if _, err := jws.Verify(&iss.Key().PublicKey); err == nil {
		t.Error("verifies with the issuer's key, want only the given key")
	}
}

func TestRotateKeyPublishesOnlyTheNewKey(t *testing.T) {
	iss := start(t, Options{})
	old := iss.KeyID()
	if err := iss.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if iss.KeyID() == old {
		t.Fatalf("kid unchanged after rotation: %q", old)
	}
	var set jose.JSONWebKeySet
	getJSON(t, iss.JWKSURL(), &set)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != iss.KeyID() {
		t.Fatalf("jwks kids = %v, want only %q", set.Keys, iss.KeyID())
	}
}

func TestSetDownAnswers503UntilUp(t *testing.T) {
	iss := start(t, Options{Flavor: GitLab})
	iss.SetDown(true)
	var v any
	for _, u := range []string{iss.URL() + "/.well-known/openid-configuration", iss.JWKSURL()} {
		if code := getJSON(t, u, &v); code != http.StatusServiceUnavailable {
			t.Errorf("GET %s while down: status %d, want 503", u, code)
		}
	}
	if iss.JWKSRequests() != 1 {
		t.Errorf("JWKSRequests() = %d, want 1 (refused requests count too)", iss.JWKSRequests())
	}
	iss.SetDown(false)
	if code := getJSON(t, iss.JWKSURL(), &v); code != http.StatusOK {
		t.Errorf("GET jwks after up: status %d, want 200", code)
	}
}

func TestSampleClaimsAreFreshAndLeaveRegisteredClaimsToSign(t *testing.T) {
	names := SampleNames()
	if len(names) < 9 {
		t.Fatalf("SampleNames() = %v, want the nine shared samples", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c, err := SampleClaims(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range signedAtIssue {
				if _, ok := c[k]; ok {
					t.Errorf("sample still has %q", k)
				}
			}
			if c["aud"] != "ferry" || c["sub"] == nil {
				t.Errorf("aud = %v, sub = %v; want the sample's values", c["aud"], c["sub"])
			}
			c["sub"] = "changed"
			again, _ := SampleClaims(name)
			if again["sub"] == "changed" {
				t.Error("SampleClaims returned a shared map")
			}
		})
	}
}

func TestSampleClaimsKeepGitLabNumericIDsAsNumbers(t *testing.T) {
	c, err := SampleClaims("gitlab-protected-deploy")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := c["runner_id"].(json.Number); !ok || n.String() != "27" {
		t.Errorf("runner_id = %#v, want json.Number 27", c["runner_id"])
	}
}

func TestSampleClaimsRefusesUnknownNames(t *testing.T) {
	for _, name := range []string{"github-push-nowhere", "../claims/README", "README.md", ""} {
		if _, err := SampleClaims(name); err == nil {
			t.Errorf("SampleClaims(%q) succeeded, want an error", name)
		}
	}
}
