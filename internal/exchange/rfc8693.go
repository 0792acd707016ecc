package exchange

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferry-broker/ferry/internal/trust"
)

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

const tokenPath = "/v1/token"

type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	RequestID       string `json:"request_id"`
}

// formError is a /v1/token request refused with an RFC 6749 code of its
// own (unsupported_grant_type); to the contract it is invalid_request.
type formError struct {
	oauth, reason string
}

func (e *formError) Error() string { return e.reason }

func formErr(oauth, reason string) *formError { return &formError{oauth: oauth, reason: reason} }

// tokenExchange serves POST /v1/token for kinds whose credential is a
// bearer token, so any RFC 8693 client (golang.org/x/oauth2, google-auth,
// Vault) can use Ferry.
func (h *handler) tokenExchange(c echo.Context) error {
	if c.Request().Method != http.MethodPost {
		return &routeError{code: MethodNotAllowed}
	}
	body, err := readBody(c)
	var req Request
	if err == nil {
		req, err = decodeTokenExchange(c.Request().Header.Get(echo.HeaderContentType), body)
	}
	req.ClientIP, req.RequestID = c.RealIP(), requestID(c)
	if err != nil {
		return h.refuse(c, req.Policy, err)
	}
	res, err := h.svc.Exchange(c.Request().Context(), req)
	if err != nil {
		return err
	}
	b := res.Credential.Bearer
	out := tokenResponse{AccessToken: b.Token, IssuedTokenType: b.Type, TokenType: "Bearer", RequestID: res.RequestID}
	out.ExpiresIn = max(int64(time.Until(res.ExpiresAt).Round(time.Second)/time.Second), 1)
	noStore(c)
	return c.JSON(http.StatusOK, out)
}

func decodeTokenExchange(contentType string, body []byte) (Request, error) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return Request{}, formErr("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Request{}, formErr("invalid_request", "the form body is malformed")
	}
	for k, v := range form {
		if len(v) > 1 {
			// RFC 6749 §3.2: parameters must not be repeated.
			return Request{}, formErr("invalid_request", fmt.Sprintf("parameter %q is repeated", k))
		}
	}
	if gt := form.Get("grant_type"); gt != GrantTypeTokenExchange {
		if gt == "" {
			return Request{}, formErr("invalid_request", `missing parameter "grant_type"`)
		}
		return Request{}, formErr("unsupported_grant_type", fmt.Sprintf("grant_type must be %s", GrantTypeTokenExchange))
	}
	req := Request{Token: form.Get("subject_token"), Policy: form.Get("audience"), BearerOnly: true}
	if req.Token == "" {
		return Request{}, formErr("invalid_request", `missing parameter "subject_token"`)
	}
	switch form.Get("subject_token_type") {
	case TokenTypeIDToken, TokenTypeJWT:
	case "":
		return Request{}, formErr("invalid_request", `missing parameter "subject_token_type"`)
	default:
		return Request{}, formErr("invalid_request", "subject_token_type must be "+TokenTypeIDToken+" or "+TokenTypeJWT)
	}
	if req.Policy == "" {
		return Request{}, formErr("invalid_request", `missing parameter "audience" (the policy name)`)
	}
	switch rt := form.Get("requested_token_type"); rt {
	case "", TokenTypeAccessToken, TokenTypeJWT:
	default:
		return Request{}, formErr("invalid_request", "requested_token_type "+rt+" is not issued here")
	}
	return req, nil
}

// oauthCode maps a refusal to RFC 6749 / RFC 8693 codes, in one place
// beside Code.Status.
func oauthCode(e *Error) string {
	var fe *formError
	if errors.As(e.Err, &fe) {
		return fe.oauth
	}
	switch e.Code {
	case InvalidRequest:
		if e.Rule == "grant_type" {
			return "invalid_target"
		}
		return "invalid_request"
	case RequestTooLarge, NotFound, MethodNotAllowed:
		return "invalid_request"
	case InvalidToken:
		return "invalid_grant"
	case AccessDenied:
		if e.Rule == trust.RuleUnknownPolicy {
			return "invalid_target"
		}
		return "invalid_grant"
	}
	return "temporarily_unavailable"
}

// oauthStatus is RFC 6749 §5.2's 400 for its request errors, keeping the
// statuses that say more (413, 405) and those of the broker's own state.
func oauthStatus(e *Error) int {
	switch e.Code {
	case InvalidRequest, InvalidToken, AccessDenied:
		return http.StatusBadRequest
	}
	return e.Code.Status()
}

// writeOAuthError writes a failure as RFC 6749 §5.2 JSON.
func (h *handler) writeOAuthError(c echo.Context, e *Error) {
	setRetryAfter(c, e.RetryAfter)
	noStore(c)
	_ = c.JSON(oauthStatus(e), errorBody{Error: oauthCode(e), Description: e.Description, RequestID: requestID(c)})
}
