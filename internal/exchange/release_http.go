package exchange

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/ferry-broker/ferry/internal/grant"
)

// The paths of release at job end.
const (
	releasePath    = "/v1/release"
	introspectPath = "/v1/introspect"
)

// registerRelease adds POST /v1/release (the contract's JSON errors) and
// POST /v1/introspect (RFC 7662, RFC 6749's error shape), with the body
// limit and rate limit of the exchange. Release shares the exchange's
// buckets (a job's own calls); introspection has buckets of its own, so a
// resource server checking tokens does not use up its address's
// exchanges.
func (h *handler) registerRelease(e *echo.Echo, limit *limiter) {
	e.POST(releasePath, h.releaseCredential, h.failWith(h.writeError), limitBody, h.rateLimit(limit))
	e.Any(introspectPath, h.introspect, h.failWith(h.writeOAuthError), limitBody,
		h.rateLimit(newLimiter(h.o.RatePerSecond, h.o.RateBurst, h.o.RateMaxClients)))
}

func (h *handler) releaseCredential(c echo.Context) error {
	body, err := readBody(c)
	var req ReleaseRequest
	if err == nil {
		req, err = decodeRelease(body)
	}
	req.ClientIP = c.RealIP()
	if err != nil {
		// Refused before the service: audited all the same, under the
		// request id the body named, if any.
		return h.svc.RefuseRelease(c.Request().Context(), req, err)
	}
	res, err := h.svc.Release(c.Request().Context(), req)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, res)
}

// releaseFields are the members of a release body, exactly as spelt.
var releaseFields = []string{"request_id", "release_token", "token"}

// releaseBody is the body of POST /v1/release.
type releaseBody struct {
	RequestID    string `json:"request_id"`
	ReleaseToken string `json:"release_token"`
	Token        string `json:"token"`
}

// decodeRelease parses POST /v1/release as strictly as the exchange's body
// (decodeStrict): one JSON object of the contract's members, each spelt
// exactly and at most once, nothing after it. The refusals never echo a
// value, which may be a credential.
func decodeRelease(body []byte) (ReleaseRequest, error) {
	var b releaseBody
	if err := decodeStrict(body, &b, releaseFields...); err != nil {
		return ReleaseRequest{}, err
	}
	req := ReleaseRequest{RequestID: b.RequestID, ReleaseToken: b.ReleaseToken, Token: b.Token}
	return req, checkRelease(req)
}

// clip bounds a caller's text quoted back in an error.
func clip(s string) string {
	const maxQuoted = 64
	if r := []rune(s); len(r) > maxQuoted {
		return string(r[:maxQuoted]) + "…"
	}
	return s
}

func (h *handler) introspect(c echo.Context) error {
	if c.Request().Method != http.MethodPost {
		return &routeError{code: MethodNotAllowed}
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	token, err := decodeIntrospect(c.Request().Header.Get(echo.HeaderContentType), body)
	if err != nil {
		return err
	}
	claims, err := h.svc.Introspect(c.Request().Context(), token)
	if err != nil {
		return err
	}
	noStore(c)
	if claims == nil {
		return c.JSON(http.StatusOK, map[string]bool{"active": false})
	}
	out := make(map[string]any, len(claims)+1)
	for k, v := range claims {
		out[k] = v
	}
	out["active"] = true
	return c.JSON(http.StatusOK, out)
}

// decodeIntrospect reads RFC 7662's form: token, and the optional
// token_type_hint. Parameters it does not know (a client's client_id, say)
// are ignored, as RFC 7662 allows; a repeated one is refused.
func decodeIntrospect(contentType string, body []byte) (string, error) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return "", formErr("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", formErr("invalid_request", "the form body is malformed")
	}
	for k, v := range form {
		if len(v) > 1 {
			return "", formErr("invalid_request", fmt.Sprintf("parameter %q is repeated", clip(k)))
		}
	}
	token := form.Get("token")
	if token == "" {
		return "", formErr("invalid_request", `missing parameter "token"`)
	}
	return token, nil
}

// Introspect asks each kind that can tell whether token is one of its live
// credentials. It returns the token's claims, or nil when no kind claims
// it (malformed, foreign, expired or revoked). An error means a kind could
// not tell: the caller hears 503, never "active".
func (s *Service) Introspect(ctx context.Context, token string) (map[string]any, error) {
	kinds := make([]string, 0, len(s.d.Minters))
	for k := range s.d.Minters {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		in, ok := grant.As[grant.Introspector](s.d.Minters[kind])
		if !ok {
			continue
		}
		claims, err := in.Introspect(ctx, token, s.shared(kind), s.d.Now())
		if err != nil {
			return nil, &unavailable{reason: "the broker could not check the token's revocation; try again", err: err}
		}
		if claims != nil {
			return claims, nil
		}
	}
	return nil, nil
}
