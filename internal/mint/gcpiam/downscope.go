package gcpiam

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google/downscope"
	"google.golang.org/grpc/codes"
)

// downscopeOp begins the Op of every downscoping error.
const downscopeOp = "downscope access token for "

// maxSTSBody bounds what is read of an STS answer; real ones are under 4 KiB.
const maxSTSBody = 1 << 20

// downscopeToken exchanges root for a token limited to rules, through
// golang.org/x/oauth2/google/downscope and Google's STS.
func (m *Minter) downscopeToken(ctx context.Context, root *Token, rules []BoundaryRule) (*Token, error) {
	op := downscopeOp + root.ServiceAccount
	abr := make([]downscope.AccessBoundaryRule, len(rules))
	for i, r := range rules {
		abr[i] = downscope.AccessBoundaryRule{
			AvailableResource:    r.AvailableResource,
			AvailablePermissions: append([]string(nil), r.AvailablePermissions...),
		}
		if c := r.Condition; c != nil {
			abr[i].Condition = &downscope.AvailabilityCondition{Expression: c.Expression, Title: c.Title, Description: c.Description}
		}
	}

	// The downscope package posts without a request context and reports
	// failures only as text. Its HTTP client comes from the context, so a
	// per-call transport binds the caller's deadline and keeps the status
	// and OAuth error of a refusal.
	base := http.DefaultTransport
	if m.downscope.HTTPClient != nil && m.downscope.HTTPClient.Transport != nil {
		base = m.downscope.HTTPClient.Transport
	}
	rec := &recordingTransport{ctx: ctx, base: base}
	client := &http.Client{Transport: rec}
	if m.downscope.HTTPClient != nil {
		client.Timeout = m.downscope.HTTPClient.Timeout
	}
	src, err := downscope.NewTokenSource(context.WithValue(ctx, oauth2.HTTPClient, client), downscope.DownscopingConfig{
		RootSource:     oauth2.StaticTokenSource(&oauth2.Token{AccessToken: root.AccessToken, TokenType: "Bearer", Expiry: root.ExpiresAt}),
		Rules:          abr,
		UniverseDomain: m.downscope.UniverseDomain,
	})
	if err != nil {
		return nil, badGrant("access_boundary", err.Error())
	}
	tok, err := src.Token()
	if err != nil {
		if ctx.Err() != nil {
			return nil, contextError(ctx, op, ctx.Err())
		}
		return nil, rec.upstreamError(op, root.AccessToken)
	}
	if tok.AccessToken == "" {
		return nil, &UpstreamError{Op: op, Code: codes.Internal, Message: "STS response has no access token"}
	}
	expires := root.ExpiresAt
	// A downscoped token cannot outlive its root; take the earlier in case
	// STS says less.
	if !tok.Expiry.IsZero() && tok.Expiry.Before(expires) {
		expires = tok.Expiry.UTC()
	}
	return &Token{AccessToken: tok.AccessToken, ExpiresAt: expires, ServiceAccount: root.ServiceAccount}, nil
}

// recordingTransport sends requests under ctx and remembers the outcome of
// the last one.
type recordingTransport struct {
	ctx  context.Context
	base http.RoundTripper

	mu     sync.Mutex
	status int
	body   []byte
	err    error
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req.WithContext(t.ctx))
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.err = err
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSTSBody))
	resp.Body.Close()
	if err != nil {
		t.err = err
		return nil, err
	}
	t.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		t.body = body
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// upstreamError describes the failed exchange from what was recorded, with
// the root token scrubbed from anything Google echoed.
func (t *recordingTransport) upstreamError(op, rootToken string) *UpstreamError {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return &UpstreamError{Op: op, Code: codes.Unavailable, Message: "STS unreachable: " + scrub(t.err.Error(), rootToken), Err: t.err}
	}
	if t.status == 0 {
		return &UpstreamError{Op: op, Code: codes.Unknown, Message: "STS exchange failed before a response"}
	}
	e := &UpstreamError{Op: op, Code: httpToCode(t.status)}
	var oauthErr struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	switch {
	case t.status == http.StatusOK:
		e.Code, e.Message = codes.Internal, "STS answered with an unreadable token response"
	case json.Unmarshal(t.body, &oauthErr) == nil && oauthErr.Error != "":
		e.Reason, e.Message = oauthErr.Error, scrub(oauthErr.Description, rootToken)
	default:
		e.Message = fmt.Sprintf("STS answered HTTP %d", t.status)
	}
	return e
}

func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// httpToCode maps an STS HTTP status onto the gRPC codes UpstreamError uses.
func httpToCode(status int) codes.Code {
	switch {
	case status == http.StatusBadRequest:
		return codes.InvalidArgument
	case status == http.StatusUnauthorized:
		return codes.Unauthenticated
	case status == http.StatusForbidden:
		return codes.PermissionDenied
	case status == http.StatusNotFound:
		return codes.NotFound
	case status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case status == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case status >= 500:
		return codes.Unavailable
	}
	return codes.Unknown
}
