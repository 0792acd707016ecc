package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/broker"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// TestRotatedKeysAreAllPublishedAndTheNewestSigns assembles a broker from a
// config the way `ferry serve` does, with a signing key and a previous one,
// and checks the rotation contract over HTTP.
func TestRotatedKeysAreAllPublishedAndTheNewestSigns(t *testing.T) {
	gh, err := devissuer.Start(devissuer.Options{Flavor: devissuer.GitHub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gh.Close() })
	gl, err := devissuer.Start(devissuer.Options{Flavor: devissuer.GitLab})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gl.Close() })

	dir := t.TempDir()
	keys := map[string]*tokensign.Key{}
	for _, name := range []string{"old.pem", "new.pem"} {
		k, err := tokensign.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := tokensign.WriteKeyFile(filepath.Join(dir, name), k); err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	policies, err := filepath.Abs(filepath.Join("..", "..", "trustpolicies"))
	if err != nil {
		t.Fatal(err)
	}
	raw := "listen: 127.0.0.1:0\npolicies: " + policies + "\n" +
		"issuers:\n" +
		"  - {name: github, issuer: " + gh.URL() + ", audiences: [ferry]}\n" +
		"  - {name: gitlab, issuer: " + gl.URL() + ", audiences: [ferry]}\n" +
		"audit: {path: audit.log}\n" +
		"token: {issuer: https://ferry.example.com, signing_key: new.pem, previous_keys: [old.pem]}\n"
	cfg, err := config.Parse([]byte(raw), dir, filepath.Join(dir, "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(context.Background(), cfg, broker.Options{Minters: map[string]grant.Minter{gcpiam.KindName: nil}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)

	var jwks jose.JSONWebKeySet
	getJSON(t, srv.URL+"/.well-known/jwks.json", &jwks)
	for name, k := range keys {
		if len(jwks.Key(k.ID)) != 1 {
			t.Errorf("the JWKS lacks %s's key %s", name, k.ID)
		}
	}

	claims, err := devissuer.SampleClaims("github-push-main")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := gh.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"policy": "ci-artifacts", "token": tok})
	resp, err := http.Post(srv.URL+"/v1/exchange", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %s", resp.StatusCode, out)
	}
	var res struct {
		Token struct {
			Token string `json:"token"`
		} `json:"token"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(res.Token.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != keys["new.pem"].ID {
		t.Errorf("token signed by kid %s, want the newest key %s", kid, keys["new.pem"].ID)
	}
	if _, err := jws.Verify(jwks.Key(keys["new.pem"].ID)[0]); err != nil {
		t.Errorf("the token does not verify with the published key: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
