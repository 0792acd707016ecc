package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const secretToken = "eyJhbGciOiJSUzI1NiJ9.SECRET-CI-TOKEN-PAYLOAD.c2lnbmF0dXJl"

// broker is an httptest broker that answers each attempt with the next
// reply in line (the last one repeats) and records what it was sent.
type broker struct {
	t       *testing.T
	srv     *httptest.Server
	replies []reply

	mu       sync.Mutex
	attempts []attempt
}

type reply struct {
	status     int
	retryAfter string
	body       string
	abort      bool // drop the connection without answering
}

type attempt struct {
	at     time.Time
	path   string
	header http.Header
	body   ExchangeRequest
	raw    string
}

const okBody = `{"policy":"deploy-prod","request_id":"01JREQ","expires_at":"2026-11-23T10:15:00Z",
 "aws":{"access_key_id":"ASIAEXAMPLE","secret_access_key":"sk","session_token":"st","expiration":"2026-11-23T10:15:00Z","role_arn":"arn:aws:iam::123456789012:role/deploy-prod"}}`

func errBody(code, desc string) string {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc, "request_id": "01JERR"})
	return string(b)
}

func newBroker(t *testing.T, replies ...reply) *broker {
	b := &broker{t: t, replies: replies}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *broker) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req ExchangeRequest
	_ = json.Unmarshal(raw, &req)
	b.mu.Lock()
	n := len(b.attempts)
	b.attempts = append(b.attempts, attempt{at: time.Now(), path: r.URL.Path, header: r.Header.Clone(), body: req, raw: string(raw)})
	b.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	rep := b.replies[min(n, len(b.replies)-1)]
	if rep.abort {
		panic(http.ErrAbortHandler)
	}
	if rep.retryAfter != "" {
		w.Header().Set("Retry-After", rep.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (b *broker) seen() []attempt {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]attempt(nil), b.attempts...)
}

// gaps are the times between consecutive attempts.
func (b *broker) gaps() []time.Duration {
	as := b.seen()
	var out []time.Duration
	for i := 1; i < len(as); i++ {
		out = append(out, as[i].at.Sub(as[i-1].at))
	}
	return out
}

func request() ExchangeRequest {
	return ExchangeRequest{Policy: "deploy-prod", Token: secretToken, Duration: "10m"}
}

func TestExchangeSuccess(t *testing.T) {
	b := newBroker(t, reply{status: 200, body: okBody})
	c := &Client{BaseURL: b.srv.URL}
	res, err := c.Exchange(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	if res.Policy != "deploy-prod" || res.AWS == nil || res.AWS.AccessKeyID != "ASIAEXAMPLE" || res.AWS.SessionToken != "st" {
		t.Errorf("result = %+v", res)
	}
	if !res.ExpiresAt.Equal(time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)) {
		t.Errorf("expires_at = %v", res.ExpiresAt)
	}
	as := b.seen()
	if len(as) != 1 {
		t.Fatalf("%d attempts, want 1", len(as))
	}
	a := as[0]
	if a.path != "/v1/exchange" {
		t.Errorf("path = %q", a.path)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if a.body != request() {
		t.Errorf("body = %+v, want %+v", a.body, request())
	}
}

func TestExchangeRequestShape(t *testing.T) {
	tests := []struct {
		name     string
		base     string // appended to the server URL
		duration string
		path     string
		fields   []string
	}{
		{"no duration is left out", "", "", "/v1/exchange", []string{"policy", "token"}},
		{"duration sent", "", "15m", "/v1/exchange", []string{"policy", "token", "duration"}},
		{"base path kept", "/ferry", "", "/ferry/v1/exchange", []string{"policy", "token"}},
		{"trailing slash", "/ferry/", "", "/ferry/v1/exchange", []string{"policy", "token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, reply{status: 200, body: okBody})
			c := &Client{BaseURL: b.srv.URL + tt.base}
			req := request()
			req.Duration = tt.duration
			if _, err := c.Exchange(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			a := b.seen()[0]
			if a.path != tt.path {
				t.Errorf("path = %q, want %q", a.path, tt.path)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(a.raw), &m); err != nil {
				t.Fatal(err)
			}
			if len(m) != len(tt.fields) {
				t.Errorf("body %s has fields other than %v", a.raw, tt.fields)
			}
			for _, f := range tt.fields {
				if _, ok := m[f]; !ok {
					t.Errorf("body %s lacks %q", a.raw, f)
				}
			}
		})
	}
}

func TestExchangeRefusals(t *testing.T) {
	tests := []struct {
		name     string
		rep      reply
		attempts int // with Attempts: 3
		code     string
		desc     string
	}{
		{"access denied is final", reply{status: 403, body: errBody("access_denied", "claim ref is refs/heads/dev, want refs/heads/main")}, 1, "access_denied", "claim ref"},
		{"invalid token is final", reply{status: 401, body: errBody("invalid_token", "token expired")}, 1, "invalid_token", "token expired"},
		{"bad request is final", reply{status: 400, body: errBody("invalid_request", "duration 13h is over 12h")}, 1, "invalid_request", "13h"},
		{"too large is final", reply{status: 413, body: errBody("request_too_large", "over 64 KiB")}, 1, "request_too_large", "64 KiB"},
		{"rate limited is retried", reply{status: 429, retryAfter: "1", body: errBody("rate_limited", "slow down")}, 3, "rate_limited", "slow down"},
		{"unavailable is retried", reply{status: 503, retryAfter: "1", body: errBody("unavailable", "issuer keys unreachable")}, 3, "unavailable", "issuer keys"},
		{"upstream error is retried", reply{status: 502, body: errBody("upstream_error", "STS refused")}, 3, "upstream_error", "STS refused"},
		{"a proxy's HTML page", reply{status: 502, body: "<html>Bad Gateway</html>"}, 3, "http_error", "Bad Gateway"},
		{"a 404 from something else", reply{status: 404, body: "not found"}, 1, "http_error", "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, tt.rep)
			c := &Client{BaseURL: b.srv.URL, Attempts: 3, MaxWait: time.Millisecond}
			res, err := c.Exchange(context.Background(), request())
			if err == nil {
				t.Fatalf("Exchange succeeded: %+v", res)
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error is not an *APIError: %v", err)
			}
			if apiErr.Status != tt.rep.status || apiErr.Code != tt.code || !strings.Contains(apiErr.Description, tt.desc) {
				t.Errorf("APIError = %+v, want status %d, code %s, description with %q", apiErr, tt.rep.status, tt.code, tt.desc)
			}
			if n := len(b.seen()); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			if tt.rep.retryAfter == "1" && apiErr.RetryAfter != time.Second {
				t.Errorf("RetryAfter = %v, want 1s", apiErr.RetryAfter)
			}
			msg := err.Error()
			for _, want := range []string{tt.code, tt.desc} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if tt.code != "http_error" && !strings.Contains(msg, "01JERR") {
				t.Errorf("error %q does not carry the request id", msg)
			}
			if strings.Contains(msg, secretToken) {
				t.Errorf("error carries the token: %q", msg)
			}
		})
	}
}

func TestExchangeRetriesThenSucceeds(t *testing.T) {
	tests := []struct {
		name     string
		first    reply
		attempts int
	}{
		{"after 429", reply{status: 429, retryAfter: "1", body: errBody("rate_limited", "x")}, 2},
		{"after 503", reply{status: 503, retryAfter: "1", body: errBody("unavailable", "x")}, 2},
		{"after 502", reply{status: 502, body: errBody("upstream_error", "x")}, 2},
		{"after a dropped connection", reply{abort: true}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, tt.first, reply{status: 200, body: okBody})
			c := &Client{BaseURL: b.srv.URL, MaxWait: 10 * time.Millisecond}
			res, err := c.Exchange(context.Background(), request())
			if err != nil {
				t.Fatal(err)
			}
			if res.AWS == nil {
				t.Errorf("result = %+v", res)
			}
			as := b.seen()
			if len(as) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(as), tt.attempts)
			}
			// Every attempt carries the whole request.
			for i, a := range as {
				if a.body != request() {
					t.Errorf("attempt %d sent %+v", i+1, a.body)
				}
			}
		})
	}
}

func TestExchangeBackOff(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		maxWait    time.Duration
		min, max   time.Duration // bounds on each gap between attempts
	}{
		// Retry-After under the cap is honoured in full.
		{"retry-after honoured", "2", 5 * time.Second, 2 * time.Second, 4 * time.Second},
		// The cap wins over a long Retry-After...
		{"retry-after capped", "3600", 50 * time.Millisecond, 50 * time.Millisecond, 900 * time.Millisecond},
		// ...and over the default back-off without one.
		{"default back-off capped", "", 50 * time.Millisecond, 50 * time.Millisecond, 900 * time.Millisecond},
		{"unparsable retry-after", "soon", 50 * time.Millisecond, 50 * time.Millisecond, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, reply{status: 429, retryAfter: tt.retryAfter, body: errBody("rate_limited", "x")}, reply{status: 200, body: okBody})
			c := &Client{BaseURL: b.srv.URL, MaxWait: tt.maxWait}
			// Fail in seconds, not an hour, if the cap is not applied.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Exchange(ctx, request()); err != nil {
				t.Fatal(err)
			}
			gaps := b.gaps()
			if len(gaps) != 1 {
				t.Fatalf("%d gaps, want 1", len(gaps))
			}
			if gaps[0] < tt.min || gaps[0] > tt.max {
				t.Errorf("waited %v between attempts, want %v..%v", gaps[0], tt.min, tt.max)
			}
		})
	}
}

func TestExchangeDefaultBackOffGrows(t *testing.T) {
	b := newBroker(t, reply{status: 503, body: errBody("unavailable", "x")})
	c := &Client{BaseURL: b.srv.URL, Attempts: 3, MaxWait: 1500 * time.Millisecond}
	if _, err := c.Exchange(context.Background(), request()); err == nil {
		t.Fatal("Exchange succeeded")
	}
	gaps := b.gaps()
	if len(gaps) != 2 {
		t.Fatalf("%d gaps, want 2", len(gaps))
	}
	// 1s, then 2s capped at 1.5s; no wait after the last attempt.
	if gaps[0] < time.Second || gaps[1] < 1500*time.Millisecond || gaps[1] > 3*time.Second {
		t.Errorf("gaps %v, want about 1s then 1.5s", gaps)
	}
}

func TestExchangeStopsWaitingWhenContextEnds(t *testing.T) {
	b := newBroker(t, reply{status: 503, retryAfter: "3600", body: errBody("unavailable", "x")})
	answered := make(chan struct{}, 1)
	c := &Client{BaseURL: b.srv.URL, MaxWait: time.Hour,
		HTTP: &http.Client{Transport: answeredTransport{http.DefaultTransport, answered}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Exchange(ctx, request())
		done <- err
	}()
	select {
	case <-answered: // the client holds the 503 and is about to back off
	case <-time.After(5 * time.Second):
		t.Fatal("no answer reached the client")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not say the context ended", err)
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Code != "unavailable" {
			t.Errorf("error %v lost the broker's refusal", err)
		}
		if strings.Contains(err.Error(), secretToken) {
			t.Errorf("error carries the token: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exchange kept waiting after its context ended")
	}
	if n := len(b.seen()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// answeredTransport is the real transport, but it reads each response
// whole before handing it on and then says so, so a test can cancel a
// context knowing the response is already in the client's hands.
type answeredTransport struct {
	next     http.RoundTripper
	answered chan<- struct{}
}

func (a answeredTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	select {
	case a.answered <- struct{}{}:
	default:
	}
	return resp, nil
}

// Failures that are not the broker's refusals: none may echo the token.
func TestExchangeOtherFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name     string
		base     func(t *testing.T) string
		want     string
		attempts int // -1: not counted
	}{
		{"200 that is not JSON", func(t *testing.T) string {
			return newBroker(t, reply{status: 200, body: "<html>login</html>"}).srv.URL
		}, "not a result", -1},
		{"200 without a credential", func(t *testing.T) string {
			return newBroker(t, reply{status: 200, body: `{"status":"ok"}`}).srv.URL
		}, "no aws, gcp, token or github credential", -1},
		{"connection refused", func(t *testing.T) string { return closedURL }, "exchange:", -1},
		{"bad base url", func(t *testing.T) string { return "http://[::1" }, "broker url", -1},
		{"plain http to another host", func(t *testing.T) string { return "http://ferry.example.com" }, "only over https", -1},
		{"no scheme", func(t *testing.T) string { return "ferry.example.com" }, "want https://HOST", -1},
		{"a redirect", func(t *testing.T) string {
			elsewhere := newBroker(t, reply{status: 200, body: `{"token":{"token":"x"}}`})
			t.Cleanup(func() {
				if n := len(elsewhere.seen()); n != 0 {
					t.Errorf("the redirect target got %d requests carrying the token", n)
				}
			})
			redirect := httptest.NewServer(http.RedirectHandler(elsewhere.srv.URL+"/v1/exchange", http.StatusTemporaryRedirect))
			t.Cleanup(redirect.Close)
			return redirect.URL
		}, "not sent on to another address", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{BaseURL: tt.base(t), MaxWait: time.Millisecond}
			res, err := c.Exchange(context.Background(), request())
			if err == nil {
				t.Fatalf("Exchange succeeded: %+v", res)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secretToken) || strings.Contains(err.Error(), "SECRET-CI-TOKEN") {
				t.Errorf("error carries the token: %q", err)
			}
			var apiErr *APIError
			if errors.As(err, &apiErr) {
				t.Errorf("a transport failure reads as a broker refusal: %v", apiErr)
			}
		})
	}
}

func TestExchangeNotJSONIsFinal(t *testing.T) {
	b := newBroker(t, reply{status: 200, body: "<html>login</html>"})
	c := &Client{BaseURL: b.srv.URL, MaxWait: time.Millisecond}
	if _, err := c.Exchange(context.Background(), request()); err == nil {
		t.Fatal("Exchange succeeded")
	}
	// The token may have been spent: a second attempt would be a replay.
	if n := len(b.seen()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func TestAPIErrorString(t *testing.T) {
	tests := []struct {
		err  APIError
		want string
	}{
		{APIError{Status: 403, Code: "access_denied", Description: "claim ref", RequestID: "01J"}, "access_denied (HTTP 403): claim ref [request_id 01J]"},
		{APIError{Status: 502, Code: "http_error", Description: "Bad Gateway"}, "http_error (HTTP 502): Bad Gateway"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// githubIssuer is an httptest stand-in for the Actions token endpoint: it
// insists on the runner's bearer and records the audience asked for.
func githubIssuer(t *testing.T, status int, body string) (srv *httptest.Server, audiences *[]string) {
	var mu sync.Mutex
	var auds []string
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/idtoken" {
			http.Error(w, "wrong endpoint", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer runner-request-token" {
			http.Error(w, "bad bearer", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "the request URL's own query was lost", http.StatusBadRequest)
			return
		}
		mu.Lock()
		if aud, ok := r.URL.Query()["audience"]; ok {
			auds = append(auds, aud...)
		} else {
			auds = append(auds, "<none>")
		}
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &auds
}

func TestFindTokenGitHub(t *testing.T) {
	tests := []struct {
		name     string
		audience string
		wantAud  string
	}{
		{"audience asked for", "ferry", "ferry"},
		{"audience needing escapes", "https://ferry.example.com/a b&c", "https://ferry.example.com/a b&c"},
		{"default audience", "", "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, auds := githubIssuer(t, 200, `{"count":1,"value":"github.jwt.value"}`)
			env := envOf(map[string]string{
				"GITHUB_ACTIONS":                 "true",
				"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/idtoken?api-version=2.0",
				"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
				"FERRY_ID_TOKEN":                 "gitlab-token-must-lose",
			})
			tok, err := FindToken(context.Background(), env, tt.audience, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			if tok != "github.jwt.value" {
				t.Errorf("token = %q", tok)
			}
			if len(*auds) != 1 || (*auds)[0] != tt.wantAud {
				t.Errorf("audiences asked for: %q, want [%q]", *auds, tt.wantAud)
			}
		})
	}
}

func TestFindTokenGitHubFailures(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		bearer string
		want   string
	}{
		{"wrong bearer", 200, `{"value":"x"}`, "stale-token", "HTTP 401"},
		{"endpoint error", 500, `{"value":"x"}`, "runner-request-token", "HTTP 500"},
		{"no value", 200, `{"count":0}`, "runner-request-token", "no token value"},
		{"not JSON", 200, `<html>`, "runner-request-token", "no token value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := githubIssuer(t, tt.status, tt.body)
			env := envOf(map[string]string{
				"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/idtoken?api-version=2.0",
				"ACTIONS_ID_TOKEN_REQUEST_TOKEN": tt.bearer,
			})
			tok, err := FindToken(context.Background(), env, "ferry", srv.Client())
			if err == nil {
				t.Fatalf("FindToken succeeded with %q", tok)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.bearer) {
				t.Errorf("error carries the runner's request token: %q", err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv, _ := githubIssuer(t, 200, `{"value":"x"}`)
		srv.Close()
		env := envOf(map[string]string{
			"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/idtoken",
			"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
		})
		_, err := FindToken(context.Background(), env, "ferry", nil)
		if err == nil || !strings.Contains(err.Error(), "GitHub ID token") || strings.Contains(err.Error(), "runner-request-token") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("not a URL", func(t *testing.T) {
		env := envOf(map[string]string{
			"ACTIONS_ID_TOKEN_REQUEST_URL":   "http://[::1",
			"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
		})
		_, err := FindToken(context.Background(), env, "ferry", nil)
		if err == nil || !strings.Contains(err.Error(), "ACTIONS_ID_TOKEN_REQUEST_URL") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestFindTokenFromEnvironment(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    string // the token, or
		wantErr string // a fragment of the error
	}{
		{"gitlab", map[string]string{"GITLAB_CI": "true", "FERRY_ID_TOKEN": "gitlab.jwt"}, "gitlab.jwt", ""},
		{"gitlab trimmed", map[string]string{"FERRY_ID_TOKEN": "  gitlab.jwt\n"}, "gitlab.jwt", ""},
		{"gitlab blank", map[string]string{"GITLAB_CI": "true", "FERRY_ID_TOKEN": " \n"}, "", "id_tokens"},
		{"gitlab without id_tokens", map[string]string{"GITLAB_CI": "true"}, "", "FERRY_ID_TOKEN is unset"},
		{"github without id-token permission", map[string]string{"GITHUB_ACTIONS": "true"}, "", "id-token: write"},
		{"github with only half the request pair", map[string]string{"GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:1/x"}, "", "id-token: write"},
		{"nowhere", map[string]string{}, "", "--token-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := FindToken(context.Background(), envOf(tt.env), "ferry", nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FindToken = %q, %v; want an error saying %q", tok, err, tt.wantErr)
				}
				if tok != "" {
					t.Errorf("a token came with the error: %q", tok)
				}
				return
			}
			if err != nil || tok != tt.want {
				t.Errorf("FindToken = %q, %v; want %q", tok, err, tt.want)
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		stdin   string
		want    string
		wantErr string
	}{
		{"file", file("tok", "a.b.c"), "", "a.b.c", ""},
		{"file trimmed", file("tok-nl", "\n  a.b.c \r\n"), "", "a.b.c", ""},
		{"stdin", "-", "a.b.c\n", "a.b.c", ""},
		{"stdin is not read for a file", file("tok2", "x.y.z"), "a.b.c", "x.y.z", ""},
		{"empty file", file("empty", " \n\t"), "", "", "is empty"},
		{"empty stdin", "-", "", "", "is empty"},
		{"missing file", filepath.Join(dir, "nope"), "", "", "read token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ReadTokenFile(tt.path, strings.NewReader(tt.stdin))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadTokenFile = %q, %v; want an error saying %q", tok, err, tt.wantErr)
				}
				return
			}
			if err != nil || tok != tt.want {
				t.Errorf("ReadTokenFile = %q, %v; want %q", tok, err, tt.want)
			}
		})
	}
}
