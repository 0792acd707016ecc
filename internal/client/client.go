// Package client is the pipeline side of Ferry: it finds the job's CI token
// and exchanges it at a broker.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-broker/ferry/internal/urlcheck"
)

// maxResponse bounds what is read from a broker or token endpoint.
const maxResponse = 1 << 20

// APIError is a refusal from the broker, in the contract's error shape.
type APIError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
	RequestID   string `json:"request_id"`
	RetryAfter  time.Duration
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Description)
	if e.RequestID != "" {
		msg += " [request_id " + e.RequestID + "]"
	}
	return msg
}

func (e *APIError) retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable
}

// Client talks to one broker.
type Client struct {
	BaseURL string
	HTTP    *http.Client
	// Attempts is how many times a retryable failure (429, 502, 503, a
	// connection error) is tried; default 3.
	Attempts int
	// MaxWait caps one back-off, whatever Retry-After says; default 10s.
	MaxWait time.Duration
}

// ExchangeRequest is the body of POST /v1/exchange.
type ExchangeRequest struct {
	Policy   string `json:"policy"`
	Token    string `json:"token"`
	Duration string `json:"duration,omitempty"`
}

// Exchange trades the token for a credential, retrying what may pass.
func (c *Client) Exchange(ctx context.Context, req ExchangeRequest) (*Result, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	data, err := c.call(ctx, brokerCall{op: "exchange", path: "/v1/exchange", secret: "the token", body: body})
	if err != nil {
		return nil, err
	}
	var res Result
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("exchange: broker answered 200 with a body that is not a result: %w", err)
	}
	if res.AWS == nil && res.GCP == nil && res.Token == nil && res.GitHub == nil {
		// Any JSON object decodes; a 200 from something that is not a
		// Ferry broker must not pass for a credential.
		return nil, errors.New("exchange: broker answered 200 with no aws, gcp, token or github credential")
	}
	return &res, nil
}

// brokerCall is one POST to the broker: the operation that names its
// errors, the path under BaseURL, what secret the body carries (for the
// redirect refusal) and the body.
type brokerCall struct {
	op, path, secret string
	body             []byte
}

// call sends k, retrying what may pass (429, 502, 503, a dropped
// connection) with backoff, and returns the body of the 200 answer. A
// refusal is an *APIError.
func (c *Client) call(ctx context.Context, k brokerCall) ([]byte, error) {
	endpoint, err := brokerEndpoint(c.BaseURL, k.path)
	if err != nil {
		return nil, err
	}
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	var last error
	for i := range attempts {
		data, wait, err := c.post(ctx, endpoint, k)
		if err == nil {
			return data, nil
		}
		last = err
		if wait < 0 || i == attempts-1 {
			break
		}
		if wait == 0 {
			wait = time.Duration(1<<i) * time.Second
		}
		wait = min(wait, c.maxWait())
		select {
		case <-ctx.Done():
			return nil, errors.Join(last, ctx.Err())
		case <-time.After(wait):
		}
	}
	return nil, last
}

func (c *Client) maxWait() time.Duration {
	if c.MaxWait > 0 {
		return c.MaxWait
	}
	return 10 * time.Second
}

// brokerEndpoint is path under base. Every request carries a secret (the
// job's token, a release token), so it goes only over TLS, or in the clear
// to this machine.
func brokerEndpoint(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("broker url %q: %w", base, err)
	}
	switch {
	case u.Host == "":
		return "", fmt.Errorf("broker url %q: want https://HOST", base)
	case u.Scheme == "https":
	case u.Scheme == "http" && urlcheck.Loopback(u.Hostname()):
	default:
		return "", fmt.Errorf("broker url %q: the token is sent only over https (plain http only to localhost)", base)
	}
	return u.JoinPath(path).String(), nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		// A redirect would resend the body, token and all, wherever the
		// Location points; post reports it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// post makes one attempt and returns the 200 answer's body. wait < 0
// means the failure is final; otherwise it is how long to back off (0: the
// default).
func (c *Client) post(ctx context.Context, endpoint string, k brokerCall) ([]byte, time.Duration, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(k.body))
	if err != nil {
		return nil, -1, fmt.Errorf("%s: %w", k.op, err)
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := c.httpClient().Do(r)
	if err != nil {
		if ctx.Err() != nil {
			return nil, -1, fmt.Errorf("%s: %w", k.op, err)
		}
		return nil, 0, fmt.Errorf("%s: %w", k.op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: read response: %w", k.op, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, -1, fmt.Errorf("%s: the broker answered HTTP %d redirecting to %q; %s is not sent on to another address: use the broker's own URL", k.op, resp.StatusCode, resp.Header.Get("Location"), k.secret)
	}
	if resp.StatusCode != http.StatusOK {
		apiErr := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, apiErr) != nil || apiErr.Code == "" {
			apiErr.Code, apiErr.Description = "http_error", strings.TrimSpace(http.StatusText(resp.StatusCode))
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			apiErr.RetryAfter = time.Duration(s) * time.Second
		}
		if apiErr.retryable() {
			return nil, apiErr.RetryAfter, apiErr
		}
		return nil, -1, apiErr
	}
	return data, 0, nil
}

// Env is the process environment, so tests can supply their own.
type Env func(string) string

// FindToken locates the job's CI token the way each platform hands it out:
// GitHub Actions' token request endpoint (asked for audience), or GitLab's
// id_tokens variable FERRY_ID_TOKEN.
func FindToken(ctx context.Context, env Env, audience string, hc *http.Client) (string, error) {
	if u, t := env("ACTIONS_ID_TOKEN_REQUEST_URL"), env("ACTIONS_ID_TOKEN_REQUEST_TOKEN"); u != "" && t != "" {
		return githubToken(ctx, u, t, audience, hc)
	}
	if tok := strings.TrimSpace(env("FERRY_ID_TOKEN")); tok != "" {
		return tok, nil
	}
	if env("GITHUB_ACTIONS") == "true" {
		return "", errors.New("no ID token: ACTIONS_ID_TOKEN_REQUEST_URL is unset; give the job `permissions: id-token: write`")
	}
	if env("GITLAB_CI") == "true" {
		return "", errors.New("no ID token: FERRY_ID_TOKEN is unset; add `id_tokens: {FERRY_ID_TOKEN: {aud: ferry}}` to the job")
	}
	return "", errors.New("no ID token: pass --token-file, or run in GitHub Actions (id-token: write) or GitLab CI (FERRY_ID_TOKEN)")
}

func githubToken(ctx context.Context, requestURL, bearer, audience string, hc *http.Client) (string, error) {
	u, err := url.Parse(requestURL)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: %w", err)
	}
	if audience != "" {
		q := u.Query()
		q.Set("audience", audience)
		u.RawQuery = q.Encode()
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("request GitHub ID token: %w", err)
	}
	r.Header.Set("Authorization", "Bearer "+bearer)
	r.Header.Set("Accept", "application/json; api-version=2.0")
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(r)
	if err != nil {
		return "", fmt.Errorf("request GitHub ID token: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", fmt.Errorf("request GitHub ID token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("request GitHub ID token: HTTP %d", resp.StatusCode)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Value == "" {
		return "", errors.New("request GitHub ID token: response has no token value")
	}
	return out.Value, nil
}

// ReadTokenFile reads a token from a file ("-" is stdin).
func ReadTokenFile(path string, stdin io.Reader) (string, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, maxResponse))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("read token: %s is empty", path)
	}
	return tok, nil
}
