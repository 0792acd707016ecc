package tokensign_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

func TestTokenGrantIsDecodedWithDefaults(t *testing.T) {
	g := granttest.MustParse(t, tokensign.Kind{}, `
audience: https://svc.example
claims: [project_path, ref]
extra_claims: {tier: gold}
`).(*tokensign.Spec)
	want := tokensign.Spec{Audience: "https://svc.example", Duration: 5 * time.Minute,
		Claims: []string{"project_path", "ref"}, Extra: map[string]string{"tier": "gold"}}
	if !reflect.DeepEqual(*g, want) || g.Kind() != "token" {
		t.Errorf("token grant = %+v", *g)
	}
}

func TestTokenGrantLimits(t *testing.T) {
	const aud = "audience: https://svc.example\n"
	granttest.Check(t, tokensign.Kind{}, map[string][2]string{
		"a minute":                           {aud + "duration: 1m\n", ""},
		"under a minute":                     {aud + "duration: 30s\n", "p.yaml:2:11: grant.token.duration 30s is out of range: allowed 1m..1h"},
		"an hour":                            {aud + "duration: 1h\n", ""},
		"over an hour":                       {aud + "duration: 2h\n", "p.yaml:2:11: grant.token.duration 2h is out of range: allowed 1m..1h"},
		"a registered claim copied":          {aud + "claims: [sub]\n", `p.yaml:2:10: grant.token.claims: "sub" is set by Ferry itself`},
		"a registered claim set":             {aud + "extra_claims: {exp: \"1\"}\n", `p.yaml:2:16: grant.token.extra_claims: "exp" is set by Ferry itself`},
		"an extra claim that is also copied": {aud + "claims: [ref]\nextra_claims: {ref: x}\n", `p.yaml:3:16: grant.token.extra_claims: "ref" is also copied by grant.token.claims`},
		"a claim listed twice":               {aud + "claims: [ref, ref]\n", `p.yaml:2:15: grant.token.claims: "ref" is listed twice`},
		"an empty audience":                  {"audience: \" \"\n", "p.yaml:1:11: grant.token.audience is empty"},
	})
}

func TestTokenGrantSignsTheJobsClaims(t *testing.T) {
	spec := granttest.MustParse(t, tokensign.Kind{}, "audience: https://svc.example\nclaims: [repository, missing]\nextra_claims: {up: \"{{repository}}@{{run_id}}\"}\n")
	c := granttest.Claims(t, "github-push-main", nil)
	rendered, err := spec.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSigner(t, "https://ferry.example.com", mustKey(t))
	now := time.Now().Truncate(time.Second)
	cred, err := s.Mint(context.Background(), grant.Request{Spec: rendered, Lifetime: 2 * time.Minute, Claims: c, Now: now,
		Job: platform.Job{Subject: "repo:acme/app:ref:refs/heads/main"}})
	if err != nil {
		t.Fatal(err)
	}
	if cred.Bearer == nil || cred.Bearer.Type != tokensign.TokenTypeJWT || cred.Bearer.Token != cred.Answer.(*tokensign.Answer).Token {
		t.Fatalf("credential = %+v", cred)
	}
	tok, err := jwt.ParseSigned(cred.Bearer.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := tok.Claims(s.JWKS().Keys[0].Key, &got); err != nil {
		t.Fatal(err)
	}
	if got["sub"] != "repo:acme/app:ref:refs/heads/main" || got["repository"] != "acme/app" || got["up"] != "acme/app@11223344556" ||
		got["missing"] != nil || got["jti"] != cred.ID || !cred.ExpiresAt.Equal(now.Add(2*time.Minute)) {
		t.Errorf("claims = %v, credential %+v", got, cred)
	}
}
