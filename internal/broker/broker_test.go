package broker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// TestRotatedKeysAreAllPublishedAndTheNewestSigns assembles a broker from a
// config the way `ferry serve` does, with a signing key and a previous one,
// and checks the rotation contract over HTTP.
func TestRotatedKeysAreAllPublishedAndTheNewestSigns(t *testing.T) {
	gh, gl := issuers.Start(t)

	dir := t.TempDir()
	keys := map[string]*tokensign.Key{}
	for _, name := range []string{"old.pem", "new.pem"} {
		keys[name] = writeSigningKey(t, filepath.Join(dir, name))
	}
	srv := serveBroker(t, gh, gl, "token: {issuer: https://ferry.example.com, signing_key: "+filepath.Join(dir, "new.pem")+
		", previous_keys: ["+filepath.Join(dir, "old.pem")+"]}\n", nil)

	var jwks jose.JSONWebKeySet
	getJSON(t, srv.base+"/.well-known/jwks.json", &jwks)
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
	resp, err := http.Post(srv.base+"/v1/exchange", "application/json", bytes.NewReader(body))
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
