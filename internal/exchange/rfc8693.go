package exchange

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
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

// oauthError is an RFC 6749 §5.2 error; Code keeps the broker's own code
// for the audit log and the HTTP status.
type oauthError struct {
	err   *Error
	oauth string
}

func (o *oauthError) Error() string { return o.err.Error() }
func (o *oauthError) Unwrap() error { return o.err }

// tokenExchange serves POST /v1/token for token and gcp grants, so any
// RFC 8693 client (golang.org/x/oauth2, google-auth, Vault) can use Ferry.
func (h *handler) tokenExchange(c echo.Context) error {
	body, err := readBody(c)
	var req Request
	if err == nil {
		req, err = decodeTokenExchange(c.Request().Header.Get(echo.HeaderContentType), body)
	}
	req.ClientIP, req.RequestID = c.RealIP(), requestID(c)
	if err != nil {
		return h.svc.Refuse(c.Request().Context(), Request{Policy: req.Policy, ClientIP: req.ClientIP, RequestID: req.RequestID}, err)
	}
	res, err := h.svc.Exchange(c.Request().Context(), req)
	if err != nil {
		return err
	}
	out := tokenResponse{TokenType: "Bearer", RequestID: res.RequestID}
	switch {
	case res.GCP != nil:
		out.AccessToken, out.IssuedTokenType = res.GCP.AccessToken, TokenTypeAccessToken
	case res.Token != nil:
		out.AccessToken, out.IssuedTokenType = res.Token.Token, TokenTypeJWT
	}
	out.ExpiresIn = int64(time.Until(res.ExpiresAt).Round(time.Second) / time.Second)
	if out.ExpiresIn < 1 {
		out.ExpiresIn = 1
	}
	noStore(c)
	return c.JSON(http.StatusOK, out)
}

func decodeTokenExchange(contentType string, body []byte) (Request, error) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return Request{}, oauthErr("invalid_request", InvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Request{}, oauthErr("invalid_request", InvalidRequest, "the form body is malformed")
	}
	for k, v := range form {
		if len(v) > 1 {
			// RFC 6749 §3.2: parameters must not be repeated.
			return Request{}, oauthErr("invalid_request", InvalidRequest, fmt.Sprintf("parameter %q is repeated", k))
		}
	}
	if gt := form.Get("grant_type"); gt != GrantTypeTokenExchange {
		if gt == "" {
			return Request{}, oauthErr("invalid_request", InvalidRequest, `missing parameter "grant_type"`)
		}
		return Request{}, oauthErr("unsupported_grant_type", InvalidRequest, fmt.Sprintf("grant_type must be %s", GrantTypeTokenExchange))
	}
	req := Request{Token: form.Get("subject_token"), Policy: form.Get("audience"), GrantTypes: []string{"token", "gcp"}}
	if req.Token == "" {
		return Request{}, oauthErr("invalid_request", InvalidRequest, `missing parameter "subject_token"`)
	}
	switch form.Get("subject_token_type") {
	case TokenTypeIDToken, TokenTypeJWT:
	case "":
		return Request{}, oauthErr("invalid_request", InvalidRequest, `missing parameter "subject_token_type"`)
	default:
		return Request{}, oauthErr("invalid_request", InvalidRequest, "subject_token_type must be "+TokenTypeIDToken+" or "+TokenTypeJWT)
	}
	if req.Policy == "" {
		return Request{}, oauthErr("invalid_request", InvalidRequest, `missing parameter "audience" (the policy name)`)
	}
	switch rt := form.Get("requested_token_type"); rt {
	case "", TokenTypeAccessToken, TokenTypeJWT:
	default:
		return Request{}, oauthErr("invalid_request", InvalidRequest, "requested_token_type "+rt+" is not issued here")
	}
	return req, nil
}

func oauthErr(code string, ferry Code, desc string) *oauthError {
	return &oauthError{err: &Error{Code: ferry, Description: desc}, oauth: code}
}

// oauthCode maps the broker's error to RFC 6749 / RFC 8693 codes, in one
// place beside Code.Status.
func oauthCode(e *Error) string {
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
		if e.Rule == "unknown_policy" {
			return "invalid_target"
		}
		return "invalid_grant"
	}
	return "temporarily_unavailable"
}

func oauthStatus(oauth string, e *Error) int {
	switch oauth {
	case "invalid_request", "invalid_grant", "invalid_target", "unsupported_grant_type":
		switch e.Code {
		case RequestTooLarge, NotFound, MethodNotAllowed:
			return e.Code.Status()
		}
		return http.StatusBadRequest
	}
	return e.Code.Status()
}

func writeOAuthError(c echo.Context, e *Error, oauth string) {
	if oauth == "" {
		oauth = oauthCode(e)
	}
	setRetryAfter(c, e.RetryAfter)
	noStore(c)
	_ = c.JSON(oauthStatus(oauth, e), errorBody{Error: oauth, Description: e.Description, RequestID: requestID(c)})
}
