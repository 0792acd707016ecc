package exchange

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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
		hdr := c.Request().Header
		req, err = decodeTokenExchange(hdr.Get(echo.HeaderContentType), hdr.Values(echo.HeaderAuthorization), body)
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

// tokenParams are the RFC 8693 parameters the endpoint reads; RFC 6749
// §3.1 has it ignore any other.
var tokenParams = []string{
	"grant_type", "subject_token", "subject_token_type", "audience",
	"resource", "scope", "requested_token_type", "actor_token", "actor_token_type",
}

// decodeTokenExchange reads an RFC 8693 request. A parameter the broker
// does not honour is refused with the RFCs' code for it, never ignored:
// the caller would get a token other than the one it asked for. No
// refusal quotes a value the caller sent.
func decodeTokenExchange(contentType string, authorization []string, body []byte) (Request, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return Request{}, formErr("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return Request{}, formErr("invalid_request", "the form must be UTF-8 (charset=utf-8, or no charset)")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Request{}, formErr("invalid_request", "the form body is malformed")
	}
	if err := checkForm(form); err != nil {
		return Request{}, err
	}
	if gt := form.Get("grant_type"); gt != GrantTypeTokenExchange {
		if gt == "" {
			return Request{}, formErr("invalid_request", `missing parameter "grant_type"`)
		}
		return Request{}, formErr("unsupported_grant_type", fmt.Sprintf("grant_type must be %s", GrantTypeTokenExchange))
	}
	req := Request{Token: form.Get("subject_token"), Policy: form.Get("audience"), BearerOnly: true}
	if req.Token == "" {
		return Request{Policy: req.Policy}, formErr("invalid_request", `missing parameter "subject_token"`)
	}
	if err := checkUnhonoured(form); err != nil {
		return Request{Policy: req.Policy}, err
	}
	switch form.Get("subject_token_type") {
	case TokenTypeIDToken, TokenTypeJWT:
	case "":
		return Request{Policy: req.Policy}, formErr("invalid_request", `missing parameter "subject_token_type"`)
	default:
		return Request{Policy: req.Policy}, formErr("invalid_request", "subject_token_type must be "+TokenTypeIDToken+" or "+TokenTypeJWT)
	}
	if req.Policy == "" {
		return Request{}, formErr("invalid_request", `missing parameter "audience" (the policy name)`)
	}
	switch req.TokenType = form.Get("requested_token_type"); req.TokenType {
	case "", TokenTypeAccessToken, TokenTypeJWT:
		// Whether the policy's kind issues that type is known once the
		// policy is: the exchange checks it before the claims are weighed.
	default:
		return Request{Policy: req.Policy}, formErr("invalid_request",
			"requested_token_type must be "+TokenTypeJWT+" (a Ferry-signed token) or "+TokenTypeAccessToken+" (a gcp grant's access token), or left out")
	}
	bearer, err := bearerHeader(authorization)
	switch {
	case err != nil && len(authorization) > 1:
		return Request{Policy: req.Policy}, err
	case err != nil:
		// Basic and other schemes are client authentication, which this
		// endpoint does not have: refused rather than taken as checked.
		return Request{Policy: req.Policy}, formErr("invalid_request",
			"this endpoint takes no client authentication: the subject_token is the credential; send no Authorization header")
	case bearer != "" && bearer != req.Token:
		return Request{Policy: req.Policy}, formErr("invalid_request", "the Authorization header and subject_token carry different tokens")
	}
	return req, nil
}

// checkForm refuses what could be read two ways: a parameter the endpoint
// reads given twice (RFC 6749 §3.2; RFC 8693 allows several audience and
// resource values, of which the broker serves one), and text that is not
// UTF-8.
func checkForm(form url.Values) error {
	for k, vs := range form {
		if !utf8.ValidString(k) {
			return formErr("invalid_request", "the form is not UTF-8")
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return formErr("invalid_request", "the form is not UTF-8")
			}
		}
		if len(vs) < 2 {
			continue
		}
		switch {
		case k == "audience" || k == "resource":
			return formErr("invalid_target", fmt.Sprintf("parameter %q is repeated: a token is issued for one policy, named by audience", k))
		case slices.Contains(tokenParams, k):
			return formErr("invalid_request", fmt.Sprintf("parameter %q is repeated", k))
		default:
			return formErr("invalid_request", "a parameter is repeated")
		}
	}
	return nil
}

// checkUnhonoured refuses the RFC 8693 parameters the broker does not
// act on. RFC 6749 §3.1 treats an empty one as left out.
func checkUnhonoured(form url.Values) error {
	switch {
	case form.Get("resource") != "":
		return formErr("invalid_target", `parameter "resource" is not supported: name the policy in "audience"; the policy decides where the token is valid`)
	case form.Get("scope") != "":
		return formErr("invalid_scope", `parameter "scope" is not supported: the policy decides what the token may do`)
	case form.Get("actor_token") != "":
		return formErr("invalid_request", `parameter "actor_token" is not supported: this endpoint does not issue delegation tokens`)
	case form.Get("actor_token_type") != "":
		// RFC 8693 §2.1: present only with an actor_token.
		return formErr("invalid_request", `parameter "actor_token_type" is given without "actor_token"`)
	}
	return nil
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
