package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/devissuer"
)

func TestVerifyAcceptsPlatformShapedTokens(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()

	t.Run("a GitHub push token yields the github identity and its claims", func(t *testing.T) {
		id, err := e.pool.Verify(ctx, sign(t, e.github, sample(t, "github-push-main")))
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		c := id.Claims
		if id.Issuer != "github" || c.Issuer != e.github.URL() {
			t.Errorf("issuer = %q / iss %q, want github / %q", id.Issuer, c.Issuer, e.github.URL())
		}
		if c.Subject != "repo:acme/app:ref:refs/heads/main" || c.Text("repository") != "acme/app" ||
			c.Text("repository_id") != "892345671" || c.Text("ref") != "refs/heads/main" {
			t.Errorf("claims sub=%q repository=%q repository_id=%q ref=%q", c.Subject, c.Text("repository"), c.Text("repository_id"), c.Text("ref"))
		}
		if c.ID == "" || len(c.Audience) != 1 || c.Audience[0] != "ferry" {
			t.Errorf("jti = %q, aud = %v; want a jti and [ferry]", c.ID, c.Audience)
		}
		if d := c.Expiry.Sub(c.IssuedAt); d != 5*time.Minute {
			t.Errorf("exp - iat = %s, want GitHub's 5m", d)
		}
	})

	t.Run("a GitLab token's numeric runner_id reads as the text 27", func(t *testing.T) {
		id, err := e.pool.Verify(ctx, sign(t, e.gitlab, sample(t, "gitlab-protected-deploy")))
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if id.Issuer != "gitlab" {
			t.Errorf("issuer = %q, want gitlab", id.Issuer)
		}
		v, ok := id.Claims.Get("runner_id")
		if !ok || v.Text != "27" || v.Kind != claims.Number {
			t.Errorf("runner_id = %+v (present %v), want number 27", v, ok)
		}
		if got := id.Claims.Text("ref"); got != "main" {
			t.Errorf("ref = %q, want GitLab's bare main", got)
		}
	})

	t.Run("a token whose aud list holds a second accepted audience verifies", func(t *testing.T) {
		c := with(sample(t, "gitlab-protected-deploy"), map[string]any{"aud": []string{"other", "https://ferry.example"}})
		if _, err := e.pool.Verify(ctx, sign(t, e.gitlab, c)); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})

	for _, name := range devissuer.SampleNames() {
		t.Run("sample "+name+" verifies", func(t *testing.T) {
			iss, want := e.github, "github"
			if strings.HasPrefix(name, "gitlab") {
				iss, want = e.gitlab, "gitlab"
			}
			id, err := e.pool.Verify(ctx, sign(t, iss, sample(t, name)))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Issuer != want || id.Claims.Subject == "" {
				t.Errorf("issuer = %q, sub = %q; want %q and a subject", id.Issuer, id.Claims.Subject, want)
			}
		})
	}
}

func TestVerifyAcceptsAGHESStyleIssuerWithAPathPrefix(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{PathPrefix: "/_services/token"})
	pool, err := NewPool([]IssuerConfig{{Name: "ghes", IssuerURL: iss.URL(), Audiences: []string{"ferry"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pool.Verify(context.Background(), sign(t, iss, sample(t, "github-push-main")))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Issuer != "ghes" || !strings.HasSuffix(id.Claims.Issuer, "/_services/token") {
		t.Errorf("issuer = %q, iss = %q", id.Issuer, id.Claims.Issuer)
	}
}

func TestVerifyUsesAConfiguredJWKSURLInsteadOfDiscovery(t *testing.T) {
	// The token claims the public GitHub issuer, which the test never
	// contacts: it verifies only if keys come from the configured JWKS URL.
	const public = "https://token.actions.githubusercontent.com"
	iss := startIssuer(t, devissuer.Options{})
	pool, err := NewPool([]IssuerConfig{{Name: "github", IssuerURL: public, Audiences: []string{"ferry"}, JWKSURL: iss.JWKSURL()}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pool.Verify(context.Background(), sign(t, iss, with(sample(t, "github-push-main"), map[string]any{"iss": public})))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Claims.Issuer != public || iss.JWKSRequests() != 1 {
		t.Errorf("iss = %q, JWKS requests = %d; want %q and 1", id.Claims.Issuer, iss.JWKSRequests(), public)
	}
}

// attack builds a token that must be refused.
type attack struct {
	name   string
	token  func(t *testing.T, e *env) string
	reason string // what TokenError.Reason must mention
}

func TestVerifyRefusesForgedAndMalformedTokens(t *testing.T) {
	push := func(t *testing.T) map[string]any { return sample(t, "github-push-main") }
	signed := func(changes map[string]any) func(t *testing.T, e *env) string {
		return func(t *testing.T, e *env) string { return sign(t, e.github, with(push(t), changes)) }
	}
	rsaKey := func(t *testing.T) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	publicKeyBytes := func(t *testing.T, e *env, form string) []byte {
		pub := &e.github.Key().PublicKey
		pkix, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		pkcs1 := x509.MarshalPKCS1PublicKey(pub)
		switch form {
		case "PKIX PEM":
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
		case "PKCS1 PEM":
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1})
		case "PKIX DER":
			return pkix
		case "PKCS1 DER":
			return pkcs1
		}
		t.Fatalf("unknown form %s", form)
		return nil
	}

	attacks := []attack{
		{"an unsigned alg none token is refused", func(t *testing.T, e *env) string {
			return noneToken(t, "", completeClaims(t, e.github, e.clock.Now()))
		}, `algorithm "none" is not allowed`},
		{"an alg none token naming the trusted kid is refused", func(t *testing.T, e *env) string {
			return noneToken(t, e.github.KeyID(), completeClaims(t, e.github, e.clock.Now()))
		}, `algorithm "none" is not allowed`},
		{"an alg None token (odd case) is refused", func(t *testing.T, e *env) string {
			return strings.Replace(noneToken(t, "", completeClaims(t, e.github, e.clock.Now())), segment(t, map[string]any{"alg": "none", "typ": "JWT"}), segment(t, map[string]any{"alg": "None", "typ": "JWT"}), 1)
		}, `algorithm "None" is not allowed`},
	}
	for _, form := range []string{"PKIX PEM", "PKCS1 PEM", "PKIX DER", "PKCS1 DER"} {
		for _, alg := range []string{"HS256", "HS512"} {
			attacks = append(attacks, attack{
				"an " + alg + " token keyed with the issuer's public key as " + form + " is refused",
				func(t *testing.T, e *env) string {
					return hmacToken(t, alg, e.github.KeyID(), publicKeyBytes(t, e, form), completeClaims(t, e.github, e.clock.Now()))
				}, `algorithm "` + alg + `" is not allowed`,
			})
		}
	}
	attacks = append(attacks, []attack{
		{"a token signed by an untrusted RSA key carrying the trusted kid is refused", func(t *testing.T, e *env) string {
			raw, err := e.github.SignWith(rsaKey(t), "RS256", e.github.KeyID(), push(t))
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, `signature does not verify with the keys of issuer "github"`},
		{"a token signed by an untrusted EC key carrying the trusted kid is refused", func(t *testing.T, e *env) string {
			ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := e.github.SignWith(ec, "ES256", e.github.KeyID(), push(t))
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, "for algorithm ES256"},
		{"a token carrying its own untrusted key in a jwk header is refused", func(t *testing.T, e *env) string {
			key := rsaKey(t)
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: e.github.KeyID()}},
				&jose.SignerOptions{EmbedJWK: true})
			if err != nil {
				t.Fatal(err)
			}
			payload, _ := json.Marshal(completeClaims(t, e.github, e.clock.Now()))
			jws, err := signer.Sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, `signature does not verify`},
		{"a PS256 token from the issuer's key published for RS256 only is refused", func(t *testing.T, e *env) string {
			raw, err := e.github.SignWith(e.github.Key(), "PS256", e.github.KeyID(), push(t))
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, "for algorithm PS256"},
		{"a token with an unknown kid is refused even when signed by the issuer's key", func(t *testing.T, e *env) string {
			raw, err := e.github.SignWith(e.github.Key(), "RS256", "no-such-kid", push(t))
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, `token key id "no-such-kid" is not among the keys of issuer "github"`},
		{"a github token signed with the gitlab issuer's key and kid is refused", func(t *testing.T, e *env) string {
			raw, err := e.github.SignWith(e.gitlab.Key(), "RS256", e.gitlab.KeyID(), push(t))
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, `is not among the keys of issuer "github"`},
		{"a github token signed with the gitlab issuer's key under the github kid is refused", func(t *testing.T, e *env) string {
			raw, err := e.github.SignWith(e.gitlab.Key(), "RS256", e.github.KeyID(), push(t))
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, `signature does not verify with the keys of issuer "github"`},
		{"a token whose iss has a trailing slash is refused", func(t *testing.T, e *env) string {
			return sign(t, e.github, with(push(t), map[string]any{"iss": e.github.URL() + "/"}))
		}, "is not a configured issuer"},
		{"a token whose iss differs in case is refused", func(t *testing.T, e *env) string {
			return sign(t, e.github, with(push(t), map[string]any{"iss": strings.ToUpper(e.github.URL())}))
		}, "is not a configured issuer"},
		{"a token whose iss names another host is refused", func(t *testing.T, e *env) string {
			return sign(t, e.github, with(push(t), map[string]any{"iss": strings.Replace(e.github.URL(), "127.0.0.1", "localhost", 1)}))
		}, "is not a configured issuer"},
		{"a token from the public GitHub issuer, not configured here, is refused", signed(map[string]any{"iss": "https://token.actions.githubusercontent.com"}), "is not a configured issuer"},
		{"a token whose iss is a number is refused", signed(map[string]any{"iss": 7}), "string iss"},
		{"a token without iss is refused", signed(map[string]any{"iss": nil}), "no iss claim"},
		{"a token without aud is refused", signed(map[string]any{"aud": nil}), "no aud claim"},
		{"a token for another audience is refused", signed(map[string]any{"aud": "sts.amazonaws.com"}), `audience ["sts.amazonaws.com"] is not one of ["ferry"]`},
		{"a token whose aud list lacks ours is refused", signed(map[string]any{"aud": []string{"a", "b"}}), `audience ["a", "b"]`},
		{"a token for an audience another issuer accepts is refused", signed(map[string]any{"aud": "https://ferry.example"}), "is not one of"},
		{"a token whose aud is a number is refused", signed(map[string]any{"aud": 1}), `claim "aud" must be a string or list of strings`},
		{"a token whose repository is a number is refused", signed(map[string]any{"repository": 892345671}), `claim "repository" must be a string, got number`},
		{"a token whose repository is a list is refused", signed(map[string]any{"repository": []string{"acme/app"}}), `claim "repository" must be a string, got list`},
		{"a token whose repository_id is not an integer is refused", signed(map[string]any{"repository_id": "89234567x"}), `claim "repository_id" must be an integer id`},
		{"a token whose exp is a string is refused", signed(map[string]any{"exp": "tomorrow"}), `claim "exp" must be a number`},
		{"a token without jti is refused", signed(map[string]any{"jti": nil}), "token has no jti; single use cannot be enforced"},
		{"a token with an empty jti is refused", signed(map[string]any{"jti": ""}), "token has no jti"},
		{"a token without exp is refused", signed(map[string]any{"exp": nil}), "token has no exp claim"},
		{"a token larger than 16 KiB is refused before parsing", signed(map[string]any{"padding": strings.Repeat("x", 16<<10)}), "more than the 16384 allowed"},
		{"a correctly signed token in JWS JSON serialization is refused", func(t *testing.T, e *env) string {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: e.github.Key(), KeyID: e.github.KeyID()}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			payload, _ := json.Marshal(completeClaims(t, e.github, e.clock.Now()))
			jws, err := signer.Sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			return jws.FullSerialize()
		}, "not a well-formed signed JWT"},
		{"a token whose payload was swapped after signing is refused", func(t *testing.T, e *env) string {
			good := strings.Split(sign(t, e.github, push(t)), ".")
			forged := segment(t, with(completeClaims(t, e.github, e.clock.Now()), map[string]any{"repository": "evil/app"}))
			return good[0] + "." + forged + "." + good[2]
		}, "signature does not verify"},
	}...)
	for _, s := range []string{"", "garbage", "a.b.c", "..", "...", "eyJhbGciOiJSUzI1NiJ9..", "eyJhbGciOiJSUzI1NiJ9.e30.", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "Bearer x.y.z", "\x00\xff.\x00.\x00"} {
		attacks = append(attacks, attack{"the garbage string " + strings.ToValidUTF8(jsonQuote(s), "?") + " is refused",
			func(*testing.T, *env) string { return s }, ""})
	}

	e := newEnv(t, Options{})
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			raw := a.token(t, e)
			id, err := e.pool.Verify(context.Background(), raw)
			if id != nil {
				t.Fatalf("Verify returned identity %+v, want nil", id)
			}
			mustTokenError(t, err, a.reason)
			if parts := strings.Split(raw, "."); len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(err.Error(), parts[2]) {
				t.Errorf("error %q quotes the token's signature", err)
			}
			if len(raw) > 20 && strings.Contains(err.Error(), raw) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

func jsonQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestVerifyRefusesWrongTypesAsClaimTypeErrors(t *testing.T) {
	e := newEnv(t, Options{})
	raw := sign(t, e.github, with(sample(t, "github-push-main"), map[string]any{"repository": 42}))
	_, err := e.pool.Verify(context.Background(), raw)
	var te *claims.TypeError
	if !errors.As(err, &te) || te.Claim != "repository" {
		t.Fatalf("err = %v, want a *claims.TypeError for repository inside the TokenError", err)
	}
}

func TestVerifyRefusesOversizedTokensWithoutFetchingKeys(t *testing.T) {
	e := newEnv(t, Options{MaxTokenBytes: 1024})
	raw := sign(t, e.github, with(sample(t, "github-push-main"), map[string]any{"padding": strings.Repeat("x", 1024)}))
	_, err := e.pool.Verify(context.Background(), raw)
	mustTokenError(t, err, "more than the 1024 allowed")
	if n := e.github.JWKSRequests(); n != 0 {
		t.Errorf("JWKS requests = %d, want 0: an oversized token must not reach the issuer", n)
	}
}

func TestVerifyChecksTimesWithLeeway(t *testing.T) {
	e := newEnv(t, Options{})
	now := e.clock.Now()
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	base := func(t *testing.T) map[string]any {
		return with(sample(t, "github-push-main"), map[string]any{"iat": at(-time.Minute), "nbf": at(-2 * time.Minute), "exp": at(4 * time.Minute)})
	}
	tests := []struct {
		name    string
		changes map[string]any
		reason  string // "" means accepted
	}{
		{"a current token is accepted", nil, ""},
		{"a token expired 59s ago is accepted within the 60s leeway", map[string]any{"exp": at(-59 * time.Second)}, ""},
		{"a token expired 62s ago is refused", map[string]any{"exp": at(-62 * time.Second)}, "token expired at " + now.Add(-62*time.Second).UTC().Format(time.RFC3339)},
		{"a token expired long ago is refused", map[string]any{"iat": at(-time.Hour), "exp": at(-50 * time.Minute)}, "token expired at"},
		{"a token not valid for another 59s is accepted", map[string]any{"nbf": at(59 * time.Second)}, ""},
		{"a token not valid for another 62s is refused", map[string]any{"nbf": at(62 * time.Second)}, "token is not valid before " + now.Add(62*time.Second).UTC().Format(time.RFC3339)},
		{"a token not valid for another 4m is refused (go-oidc alone would allow 5m)", map[string]any{"nbf": at(4 * time.Minute)}, "token is not valid before"},
		{"a token issued 30s in the future is accepted", map[string]any{"iat": at(30 * time.Second)}, ""},
		{"a token issued 62s in the future is refused", map[string]any{"iat": at(62 * time.Second)}, "token was issued in the future"},
		{"a token with exp 0 is refused as expired", map[string]any{"exp": 0}, "token expired at 1970-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.pool.Verify(context.Background(), sign(t, e.github, with(base(t), tt.changes)))
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

func TestVerifyAppliesASmallerLeeway(t *testing.T) {
	e := newEnv(t, Options{Leeway: 5 * time.Second})
	now := e.clock.Now()
	raw := sign(t, e.github, with(sample(t, "github-push-main"), map[string]any{
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(-10 * time.Second).Unix(),
	}))
	_, err := e.pool.Verify(context.Background(), raw)
	mustTokenError(t, err, "leeway 5s")
}

func TestNewPoolRefusesBadConfig(t *testing.T) {
	good := IssuerConfig{Name: "github", IssuerURL: "https://token.actions.githubusercontent.com", Audiences: []string{"ferry"}}
	change := func(f func(*IssuerConfig)) []IssuerConfig {
		c := good
		f(&c)
		return []IssuerConfig{c}
	}
	tests := []struct {
		name string
		cfgs []IssuerConfig
		opts Options
		want string
	}{
		{"no issuers", nil, Options{}, "no issuers"},
		{"an issuer without a name", change(func(c *IssuerConfig) { c.Name = "" }), Options{}, "name is empty"},
		{"two issuers with one name", []IssuerConfig{good, {Name: "github", IssuerURL: "https://gitlab.com", Audiences: []string{"ferry"}}}, Options{}, "used twice"},
		{"two issuers with one URL", []IssuerConfig{good, {Name: "other", IssuerURL: good.IssuerURL, Audiences: []string{"ferry"}}}, Options{}, "configured twice"},
		{"a plain http issuer off loopback", change(func(c *IssuerConfig) { c.IssuerURL = "http://gitlab.example.com" }), Options{}, "must use https"},
		{"a plain http JWKS URL off loopback", change(func(c *IssuerConfig) { c.JWKSURL = "http://10.0.0.1/keys" }), Options{}, "must use https"},
		{"an issuer URL that is not absolute", change(func(c *IssuerConfig) { c.IssuerURL = "token.actions.githubusercontent.com" }), Options{}, "not an absolute URL"},
		{"an issuer URL with a query", change(func(c *IssuerConfig) { c.IssuerURL += "?x=1" }), Options{}, "not an absolute URL"},
		{"an issuer without audiences", change(func(c *IssuerConfig) { c.Audiences = nil }), Options{}, "no audiences"},
		{"an empty audience", change(func(c *IssuerConfig) { c.Audiences = []string{""} }), Options{}, "audience is empty"},
		{"a leeway over 60s", []IssuerConfig{good}, Options{Leeway: 61 * time.Second}, "more than the 1m0s allowed"},
		{"a negative leeway", []IssuerConfig{good}, Options{Leeway: -time.Second}, "negative"},
		{"a negative min refresh", []IssuerConfig{good}, Options{MinRefresh: -time.Second}, "negative"},
		{"a negative token size", []IssuerConfig{good}, Options{MaxTokenBytes: -1}, "negative"},
		{"a refresh interval over 15m", []IssuerConfig{good}, Options{RefreshInterval: 16 * time.Minute}, "more than the 15m0s allowed"},
		{"a negative refresh interval", []IssuerConfig{good}, Options{RefreshInterval: -time.Minute}, "negative"},
		{"a min refresh longer than the refresh interval", []IssuerConfig{good}, Options{MinRefresh: 10 * time.Minute, RefreshInterval: 5 * time.Minute}, "more than the refresh interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			_, err := NewPool(tt.cfgs, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewPool err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	t.Run("plain http on loopback is accepted for local issuers", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:9000/x", "http://[::1]:1"} {
			if _, err := NewPool(change(func(c *IssuerConfig) { c.IssuerURL = u }), Options{}); err != nil {
				t.Errorf("NewPool with %s: %v", u, err)
			}
		}
	})
}
