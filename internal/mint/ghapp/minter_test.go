package ghapp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/testsupport/githubfake"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

const appID = 123456

// appKey is the test App's key: RSA generation is slow, so one for all.
var appKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newMinter(t *testing.T, apiURL string, edit ...func(*ghapp.Options)) *ghapp.Minter {
	t.Helper()
	o := ghapp.Options{AppID: appID, Key: appKey(), APIURL: apiURL}
	for _, e := range edit {
		e(&o)
	}
	m, err := ghapp.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// request is a mint of the grant src for the github-push-main job
// (acme/app).
func request(t *testing.T, src string) grant.Request {
	t.Helper()
	c := granttest.Claims(t, "github-push-main", nil)
	spec, err := granttest.MustParse(t, ghapp.Kind{}, src).Render(c)
	if err != nil {
		t.Fatal(err)
	}
	return grant.Request{Policy: "checkout", Spec: spec, Lifetime: time.Hour, Claims: c, Now: time.Now()}
}

const checkout = "repositories: [\"{{repository}}\", infra]\npermissions: {contents: read}\n"

func startFake(t *testing.T) *githubfake.Server {
	t.Helper()
	gh := githubfake.Start(t, appID, &appKey().PublicKey)
	gh.Install("acme", []string{"app", "infra", "web"}, map[string]string{"contents": "write", "pull_requests": "write", "metadata": "read"})
	return gh
}

func upstream(t *testing.T, err error) *grant.UpstreamError {
	t.Helper()
	var ue *grant.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want a *grant.UpstreamError", err, err)
	}
	if ue.Provider != "GitHub" || strings.Contains(ue.Error(), "127.0.0.1") {
		t.Errorf("error %q: want GitHub named and no address", ue.Error())
	}
	return ue
}

func TestMintAsksForExactlyThePolicysRepositoriesAndPermissions(t *testing.T) {
	gh := startFake(t)
	m := newMinter(t, gh.URL)
	before := time.Now()
	cred, err := m.Mint(context.Background(), request(t, checkout))
	if err != nil {
		t.Fatal(err)
	}
	a := cred.Answer.(*ghapp.Answer)
	if !strings.HasPrefix(a.Token, "ghs_") || !reflect.DeepEqual(a.Repositories, []string{"acme/app", "acme/infra"}) ||
		!reflect.DeepEqual(a.Permissions, map[string]string{"contents": "read"}) || !a.ExpiresAt.Equal(cred.ExpiresAt) ||
		a.ExpiresAt.Before(before.Add(59*time.Minute)) || a.ExpiresAt.After(before.Add(61*time.Minute)) {
		t.Errorf("answer = %+v", a)
	}
	sum := sha256.Sum256([]byte(a.Token))
	if cred.ID != "sha256:"+hex.EncodeToString(sum[:])[:16] {
		t.Errorf("credential id %q, want sha256: and 16 hex digits of the token's hash", cred.ID)
	}
	if strings.Contains(cred.Release, a.Token) || strings.Contains(cred.ID, a.Token[4:]) || cred.Bearer != nil {
		t.Errorf("the token leaks beyond the answer: id %q, release %q", cred.ID, cred.Release)
	}

	// What GitHub was asked, and what the token can do there.
	reqs := gh.Requests()
	if len(reqs) != 2 || reqs[0].Method != "GET" || reqs[0].Path != "/repos/acme/app/installation" || reqs[0].Auth != "app" ||
		reqs[1].Method != "POST" || !strings.HasPrefix(reqs[1].Path, "/app/installations/") || reqs[1].Auth != "app" {
		t.Fatalf("requests = %+v", reqs)
	}
	if body := string(reqs[1].Body); strings.TrimSpace(body) != `{"repositories":["app","infra"],"permissions":{"contents":"read"}}` {
		t.Errorf("token request body %s, want exactly the policy's repositories and permissions", body)
	}
	tok, ok := gh.Token(a.Token)
	if !ok || !reflect.DeepEqual(tok.Repositories, []string{"app", "infra"}) || !reflect.DeepEqual(tok.Permissions, map[string]string{"contents": "read"}) {
		t.Errorf("token at GitHub = %+v", tok)
	}
}

func TestMintSignsAnAppJWTGitHubAccepts(t *testing.T) {
	gh := startFake(t)
	var auth string
	rec := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/installation") {
			auth = r.Header.Get("Authorization")
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	now := time.Now().Truncate(time.Second)
	m := newMinter(t, gh.URL, func(o *ghapp.Options) { o.Transport, o.Now = rec, func() time.Time { return now } })
	if _, err := m.Mint(context.Background(), request(t, checkout)); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(strings.TrimPrefix(auth, "Bearer "), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	if err := tok.Claims(&appKey().PublicKey, &c); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "123456" || !c.IssuedAt.Time().Equal(now.Add(-time.Minute)) || c.Expiry.Time().After(now.Add(10*time.Minute)) ||
		!c.Expiry.Time().After(now.Add(5*time.Minute)) || tok.Headers[0].Algorithm != "RS256" {
		t.Errorf("App JWT: alg %s, claims %+v", tok.Headers[0].Algorithm, c)
	}
}

// The JWT's margins take a clock that drifts by less than a minute.
func TestAppJWTSurvivesClockDrift(t *testing.T) {
	for _, drift := range []time.Duration{-8 * time.Minute, -50 * time.Second, 50 * time.Second} {
		gh := startFake(t)
		m := newMinter(t, gh.URL, func(o *ghapp.Options) { o.Now = func() time.Time { return time.Now().Add(drift) } })
		if _, err := m.Mint(context.Background(), request(t, checkout)); err != nil {
			t.Errorf("a clock %s off GitHub's: %v", drift, err)
		}
	}
}

func TestGitHubRefusingTheAppJWT(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*ghapp.Options)
		want string
	}{
		{"another App's key", func(o *ghapp.Options) { o.Key = other }, "GitHub failed: 401: A JSON web token could not be decoded"},
		{"another App's id", func(o *ghapp.Options) { o.AppID = 99 }, "GitHub failed: 401: 'Issuer' claim ('iss')"},
		{"a clock running 2 minutes ahead of GitHub's", func(o *ghapp.Options) { o.Now = func() time.Time { return time.Now().Add(2 * time.Minute) } },
			"GitHub failed: 401: 'Issued at' claim ('iat') must be an Integer representing a time in the past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := startFake(t)
			_, err := newMinter(t, gh.URL, tt.edit).Mint(context.Background(), request(t, checkout))
			ue := upstream(t, err)
			if !strings.HasPrefix(ue.Error(), tt.want) || ue.Transient {
				t.Errorf("error %q (transient %v), want %q, final", ue.Error(), ue.Transient, tt.want)
			}
			if n := len(gh.Tokens()); n != 0 {
				t.Errorf("%d tokens minted", n)
			}
		})
	}
}

func TestGitHubRefusingOrFailingTheMint(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(*githubfake.Server)
		src       string
		want      string
		transient bool
		retry     time.Duration
	}{
		{"the App not installed on the owner", func(gh *githubfake.Server) { gh.Install("other", nil, map[string]string{"contents": "read"}) },
			"owner: nobody\nrepositories: [app]\npermissions: {contents: read}\n",
			"GitHub failed: 404: the GitHub App is not installed on nobody, or not for its repository nobody/app (GitHub: Not Found)", false, 0},
		{"the App not installed for the job's repository", nil, "permissions: {contents: read}\nrepositories: [secret]\n",
			"GitHub failed: 404: the GitHub App is not installed on acme, or not for its repository acme/secret", false, 0},
		{"a repository the installation cannot reach", nil, "repositories: [app, secret]\npermissions: {contents: read}\n",
			"GitHub failed: 422: There is at least one repository that does not exist or is not accessible to the parent installation.", false, 0},
		{"a permission not granted to the App", nil, "permissions: {issues: write}\n",
			"GitHub failed: 422: The permissions requested are not granted to this installation.", false, 0},
		{"a level above the App's", func(gh *githubfake.Server) { gh.Install("acme", nil, map[string]string{"contents": "read"}) },
			"permissions: {contents: write}\n", "GitHub failed: 422: The permissions requested are not granted to this installation.", false, 0},
		{"a suspended installation", func(gh *githubfake.Server) {
			gh.Install("acme", nil, map[string]string{"contents": "read"}).Suspended = true
		}, "permissions: {contents: read}\n", "GitHub failed: 403: This installation has been suspended", false, 0},
		{"GitHub down", func(gh *githubfake.Server) {
			gh.Fail(&githubfake.Failure{Status: http.StatusServiceUnavailable, Message: "GitHub is temporarily unavailable"})
		}, checkout, "GitHub failed: 503: GitHub is temporarily unavailable", true, 0},
		{"a 500 without a message", func(gh *githubfake.Server) { gh.Fail(&githubfake.Failure{Status: http.StatusInternalServerError}) },
			checkout, "GitHub failed: 500: Internal Server Error", true, 0},
		{"a secondary rate limit", func(gh *githubfake.Server) { gh.Fail(githubfake.SecondaryRateLimit(42 * time.Second)) },
			checkout, "GitHub failed: 403: You have exceeded a secondary rate limit.", true, 42 * time.Second},
		{"GitHub unreachable", func(gh *githubfake.Server) { gh.Close() }, checkout, "GitHub failed: could not be reached", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := startFake(t)
			if tt.setup != nil {
				tt.setup(gh)
			}
			_, err := newMinter(t, gh.URL).Mint(context.Background(), request(t, tt.src))
			ue := upstream(t, err)
			if !strings.HasPrefix(ue.Error(), tt.want) || ue.Transient != tt.transient || ue.RetryAfter != tt.retry {
				t.Errorf("error %q (transient %v, retry after %s), want %q (transient %v, retry after %s)",
					ue.Error(), ue.Transient, ue.RetryAfter, tt.want, tt.transient, tt.retry)
			}
		})
	}
}

func TestMintThatGitHubDoesNotAnswerInTime(t *testing.T) {
	hang := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done()
		return nil, r.Context().Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := newMinter(t, "https://ghes.acme.example/api/v3", func(o *ghapp.Options) { o.Transport = hang }).Mint(ctx, request(t, checkout))
	if ue := upstream(t, err); ue.Error() != "GitHub failed: did not answer in time" || !ue.Transient {
		t.Errorf("error %q", ue.Error())
	}
}

// stubGitHub answers the installation lookup and token creation with the
// given token JSON, and records the token deletions it is asked for.
func stubGitHub(t *testing.T, account string, token map[string]any) (*httptest.Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var deleted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET":
			_ = json.NewEncoder(w).Encode(map[string]any{"id": 7, "account": map[string]any{"login": account}})
		case r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(token)
		case r.Method == "DELETE":
			mu.Lock()
			deleted = append(deleted, r.Header.Get("Authorization"))
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &deleted
}

func TestGitHubGrantingMoreThanAskedIsRefusedAndTheTokenDeleted(t *testing.T) {
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	repo := func(name string) map[string]any { return map[string]any{"name": name, "full_name": "acme/" + name} }
	tests := []struct {
		name  string
		token map[string]any
		want  string
	}{
		{"every repository", map[string]any{"token": "ghs_x1", "expires_at": exp, "permissions": map[string]string{"contents": "read"}, "repository_selection": "all"},
			`GitHub failed: GitHub granted repository_selection "all", not the repositories asked for; the token was deleted`},
		{"another repository", map[string]any{"token": "ghs_x2", "expires_at": exp, "permissions": map[string]string{"contents": "read"},
			"repository_selection": "selected", "repositories": []any{repo("app"), repo("secret")}},
			"GitHub failed: GitHub granted repository acme/secret, which was not asked for; the token was deleted"},
		{"a stronger permission", map[string]any{"token": "ghs_x3", "expires_at": exp, "permissions": map[string]string{"contents": "write"}, "repository_selection": "selected"},
			"GitHub failed: GitHub granted contents: write, more than was asked for; the token was deleted"},
		{"another permission", map[string]any{"token": "ghs_x4", "expires_at": exp, "permissions": map[string]string{"contents": "read", "administration": "read"}},
			"GitHub failed: GitHub granted administration: read, more than was asked for; the token was deleted"},
		{"no expiry", map[string]any{"token": "ghs_x5", "permissions": map[string]string{"contents": "read"}},
			"GitHub failed: GitHub answered without the token's expires_at; the token was deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, deleted := stubGitHub(t, "acme", tt.token)
			_, err := newMinter(t, srv.URL).Mint(context.Background(), request(t, "repositories: [app]\npermissions: {contents: read}\n"))
			if ue := upstream(t, err); ue.Error() != tt.want || ue.Transient {
				t.Errorf("error %q, want %q", ue.Error(), tt.want)
			}
			if want := []string{"Bearer " + tt.token["token"].(string)}; !reflect.DeepEqual(*deleted, want) {
				t.Errorf("deleted %q, want %q", *deleted, want)
			}
		})
	}
}

func TestMetadataReadThatGitHubAddsIsAccepted(t *testing.T) {
	srv, deleted := stubGitHub(t, "acme", map[string]any{"token": "ghs_ok", "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339),
		"permissions": map[string]string{"contents": "read", "metadata": "read"}, "repository_selection": "selected"})
	cred, err := newMinter(t, srv.URL).Mint(context.Background(), request(t, "repositories: [app]\npermissions: {contents: read}\n"))
	if err != nil || len(*deleted) != 0 {
		t.Fatalf("mint: %v, deleted %q", err, *deleted)
	}
	if a := cred.Answer.(*ghapp.Answer); !reflect.DeepEqual(a.Repositories, []string{"acme/app"}) || a.Permissions["metadata"] != "read" {
		t.Errorf("answer = %+v, want GitHub's own account of the token", a)
	}
}

func TestATransferredRepositoryIsNotMintedFor(t *testing.T) {
	srv, _ := stubGitHub(t, "new-owner", map[string]any{})
	_, err := newMinter(t, srv.URL).Mint(context.Background(), request(t, "owner: acme\nrepositories: [app]\npermissions: {contents: read}\n"))
	if ue := upstream(t, err); ue.Error() != "GitHub failed: 404: repository acme/app belongs to new-owner now, not to acme" {
		t.Errorf("error %q", ue.Error())
	}
}

func TestCredentialsAreNotSentAlongARedirectToAnotherHost(t *testing.T) {
	var leaked []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = append(leaked, r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusMovedPermanently)
	}))
	defer api.Close()
	_, err := newMinter(t, api.URL).Mint(context.Background(), request(t, checkout))
	if ue := upstream(t, err); ue.Error() != "GitHub failed: redirected the request to another host; not followed" || ue.Transient {
		t.Errorf("error %q", ue.Error())
	}
	if len(leaked) != 0 {
		t.Errorf("the redirect target was sent %q", leaked)
	}
}

func TestMintRefusesASpecWithTemplatesLeft(t *testing.T) {
	spec := granttest.MustParse(t, ghapp.Kind{}, checkout)
	_, err := newMinter(t, "https://api.github.com").Mint(context.Background(), grant.Request{Spec: spec})
	var bad *grant.BadGrantError
	if !errors.As(err, &bad) {
		t.Errorf("error %v, want a *grant.BadGrantError", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// GitHub answers a renamed repository with a redirect on its own host,
// which is followed.
func TestARedirectOnGitHubsOwnHostIsFollowed(t *testing.T) {
	gh := startFake(t)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/repos/acme/old-name/installation" {
			http.Redirect(w, r, srv.URL+"/repos/acme/app/installation", http.StatusMovedPermanently)
			return
		}
		// Everything else goes to the fake, as one host.
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, gh.URL+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer srv.Close()
	gh.Install("acme", nil, map[string]string{"contents": "read"})
	if _, err := newMinter(t, srv.URL).Mint(context.Background(), request(t, "owner: acme\nrepositories: [old-name]\npermissions: {contents: read}\n")); err != nil {
		t.Fatal(err)
	}
	reqs := gh.Requests()
	if len(reqs) != 2 || reqs[0].Path != "/repos/acme/app/installation" || reqs[0].Auth != "app" {
		t.Errorf("requests at GitHub: %+v", reqs)
	}
}
