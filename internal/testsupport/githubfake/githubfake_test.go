package githubfake_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ferry-broker/ferry/internal/testsupport/githubfake"
)

var keys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var out [2]*rsa.PrivateKey
	for i := range out {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		out[i] = k
	}
	return out
})

func appJWT(t *testing.T, key *rsa.PrivateKey, iss string, iat, exp time.Time) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(jwt.Claims{Issuer: iss, IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(exp)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	body   map[string]any
}

func call(t *testing.T, method, url, auth, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &a.body); err != nil {
			t.Fatalf("%s %s answered %q: %v", method, url, data, err)
		}
	}
	return a
}

func TestTheFakeChecksTheAppJWTAsGitHubDoes(t *testing.T) {
	gh := githubfake.Start(t, 42, &keys()[0].PublicKey)
	gh.Install("acme", nil, map[string]string{"contents": "read"})
	now := time.Now()
	url := gh.URL + "/repos/acme/app/installation"
	tests := []struct {
		name, jwt string
		status    int
		message   string
	}{
		{"a good JWT", appJWT(t, keys()[0], "42", now.Add(-time.Minute), now.Add(9*time.Minute)), 200, ""},
		{"another key", appJWT(t, keys()[1], "42", now.Add(-time.Minute), now.Add(9*time.Minute)), 401, "A JSON web token could not be decoded"},
		{"another App", appJWT(t, keys()[0], "43", now.Add(-time.Minute), now.Add(9*time.Minute)), 401, "'Issuer' claim ('iss') must be an Integer"},
		{"issued in the future", appJWT(t, keys()[0], "42", now.Add(time.Minute), now.Add(9*time.Minute)), 401, "'Issued at' claim ('iat') must be an Integer representing a time in the past"},
		{"expired", appJWT(t, keys()[0], "42", now.Add(-time.Hour), now.Add(-time.Minute)), 401, "'Expiration time' claim ('exp') must be a numeric value"},
		{"expiring in over 10 minutes", appJWT(t, keys()[0], "42", now.Add(-time.Minute), now.Add(11*time.Minute)), 401, "'Expiration time' claim ('exp') is too far in the future"},
		{"no JWT", "", 401, "A JSON web token could not be decoded"},
		{"not a JWT", "ghs_notajwt", 401, "A JSON web token could not be decoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, "GET", url, tt.jwt, "")
			if a.status != tt.status || (tt.message != "" && !strings.HasPrefix(a.body["message"].(string), tt.message)) {
				t.Errorf("answered %d %v, want %d %q", a.status, a.body, tt.status, tt.message)
			}
		})
	}
}

func TestTheFakeMintsScopedTokensAndRefusesAsGitHubDoes(t *testing.T) {
	gh := githubfake.Start(t, 42, &keys()[0].PublicKey)
	in := gh.Install("acme", []string{"app", "infra"}, map[string]string{"contents": "write", "metadata": "read"})
	now := time.Now()
	app := appJWT(t, keys()[0], "42", now.Add(-time.Minute), now.Add(9*time.Minute))

	if a := call(t, "GET", gh.URL+"/repos/acme/web/installation", app, ""); a.status != 404 || a.body["message"] != "Not Found" {
		t.Errorf("a repository outside the installation: %d %v", a.status, a.body)
	}
	if a := call(t, "GET", gh.URL+"/repos/other/app/installation", app, ""); a.status != 404 {
		t.Errorf("an owner without the App: %d %v", a.status, a.body)
	}
	a := call(t, "GET", gh.URL+"/repos/ACME/app/installation", app, "")
	if a.status != 200 || a.body["id"].(float64) != float64(in.ID) || a.body["account"].(map[string]any)["login"] != "acme" {
		t.Fatalf("installation: %d %v", a.status, a.body)
	}
	tokens := gh.URL + "/app/installations/" + jsonNumber(in.ID) + "/access_tokens"
	if a := call(t, "POST", tokens, app, `{"repositories":["app"],"permissions":{"issues":"read"}}`); a.status != 422 ||
		a.body["message"] != "The permissions requested are not granted to this installation." {
		t.Errorf("a permission the App lacks: %d %v", a.status, a.body)
	}
	if a := call(t, "POST", tokens, app, `{"repositories":["web"],"permissions":{"contents":"read"}}`); a.status != 422 ||
		!strings.HasPrefix(a.body["message"].(string), "There is at least one repository") {
		t.Errorf("a repository the installation lacks: %d %v", a.status, a.body)
	}
	if a := call(t, "POST", gh.URL+"/app/installations/1/access_tokens", app, `{}`); a.status != 404 {
		t.Errorf("an unknown installation: %d %v", a.status, a.body)
	}
	a = call(t, "POST", tokens, app, `{"repositories":["app"],"permissions":{"contents":"read"}}`)
	tok, _ := a.body["token"].(string)
	if a.status != 201 || !strings.HasPrefix(tok, "ghs_") || len(tok) != 40 || a.body["repository_selection"] != "selected" ||
		a.body["repositories"].([]any)[0].(map[string]any)["full_name"] != "acme/app" {
		t.Fatalf("token: %d %v", a.status, a.body)
	}
	if exp, err := time.Parse(time.RFC3339, a.body["expires_at"].(string)); err != nil || exp.Before(now.Add(59*time.Minute)) {
		t.Errorf("expires_at %v: %v", a.body["expires_at"], err)
	}

	// The token reaches what it was minted for, until it is deleted.
	if r := call(t, "GET", gh.URL+"/installation/repositories", tok, ""); r.status != 200 || r.body["total_count"].(float64) != 1 {
		t.Errorf("the token's repositories: %d %v", r.status, r.body)
	}
	if r := call(t, "GET", gh.URL+"/installation/repositories", app, ""); r.status != 401 {
		t.Errorf("the App JWT is no installation token: %d", r.status)
	}
	if r := call(t, "DELETE", gh.URL+"/installation/token", tok, ""); r.status != 204 {
		t.Errorf("delete: %d %v", r.status, r.body)
	}
	if r := call(t, "DELETE", gh.URL+"/installation/token", tok, ""); r.status != 401 || r.body["message"] != "Bad credentials" {
		t.Errorf("delete again: %d %v", r.status, r.body)
	}
	if r := call(t, "GET", gh.URL+"/installation/repositories", tok, ""); r.status != 401 {
		t.Errorf("a deleted token still works: %d", r.status)
	}

	reqs := gh.Requests()
	if len(reqs) != 12 || reqs[0].Auth != "app" || reqs[9].Method != "DELETE" || reqs[9].Auth != "token" || reqs[10].Auth != "bad" {
		t.Errorf("requests recorded: %+v", reqs)
	}
}

func TestTheFakeFailsWhenTold(t *testing.T) {
	gh := githubfake.Start(t, 42, &keys()[0].PublicKey)
	gh.Install("acme", nil, map[string]string{"contents": "read"})
	gh.Fail(githubfake.SecondaryRateLimit(30 * time.Second))
	app := appJWT(t, keys()[0], "42", time.Now().Add(-time.Minute), time.Now().Add(9*time.Minute))
	if a := call(t, "GET", gh.URL+"/repos/acme/app/installation", app, ""); a.status != 403 ||
		!strings.HasSuffix(a.body["documentation_url"].(string), "#about-secondary-rate-limits") {
		t.Errorf("secondary rate limit: %d %v", a.status, a.body)
	}
	gh.Fail(nil)
	if a := call(t, "GET", gh.URL+"/repos/acme/app/installation", app, ""); a.status != 200 {
		t.Errorf("after recovery: %d %v", a.status, a.body)
	}
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
