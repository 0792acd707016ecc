package exchange

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/trust"
)

// Code is an error code of the HTTP API contract.
type Code string

// The contract's error codes.
const (
	InvalidRequest  Code = "invalid_request"
	InvalidToken    Code = "invalid_token"
	AccessDenied    Code = "access_denied"
	RequestTooLarge Code = "request_too_large"
	RateLimited     Code = "rate_limited"
	UpstreamError   Code = "upstream_error"
	Unavailable     Code = "unavailable"
	NotFound        Code = "not_found"
	// MethodNotAllowed is a known path asked with the wrong method.
	MethodNotAllowed Code = "method_not_allowed"
)

// Status is the one place an error code becomes an HTTP status. No failure
// is a 200 or a 500.
func (c Code) Status() int {
	switch c {
	case InvalidRequest:
		return http.StatusBadRequest
	case InvalidToken:
		return http.StatusUnauthorized
	case AccessDenied:
		return http.StatusForbidden
	case NotFound:
		return http.StatusNotFound
	case MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case RequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case RateLimited:
		return http.StatusTooManyRequests
	case UpstreamError:
		return http.StatusBadGateway
	default:
		return http.StatusServiceUnavailable
	}
}

// Error is a refusal as the contract states it: what classify makes of any
// error. Description is shown to the caller and must never hold a token
// or secret; Err is the detail for the server's log.
type Error struct {
	Code        Code
	Description string
	// Rule is the policy rule that decided a denial ("match.ref",
	// "deny[0]", "unknown_policy", "replay"), for the audit record and
	// RFC 8693's invalid_target.
	Rule       string
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

func (e *Error) Unwrap() error { return e.Err }

// The exchange's own refusals. Each is a type, not a code: classify alone
// says what the contract calls it.
type (
	// badRequest is a request the contract does not allow: malformed JSON,
	// a missing field, a bad duration.
	badRequest struct{ reason string }
	// tooLarge is a body over MaxBodyBytes.
	tooLarge struct{}
	// denied is a policy refusing the request.
	denied struct{ rule, reason string }
	// replayed is a token id already used for the policy.
	replayed struct{ reason string }
	// wrongEndpoint is a policy whose kind this endpoint does not serve.
	wrongEndpoint struct{ reason string }
	// throttled is the broker's own rate limit: the client address's, or
	// (with a reason and rule) a repository's or policy's.
	throttled struct {
		wait         time.Duration
		reason, rule string
	}
	// unavailable is the broker unable to decide now (no policies, the
	// replay store or audit log failing).
	unavailable struct {
		reason string
		err    error
	}
	// routeError is an unknown path or a known one with the wrong method.
	routeError struct{ code Code }
	// atCapacity is the broker holding as many live token ids as it may
	// (the replay store's cap): no new token is taken until one expires.
	atCapacity struct {
		wait time.Duration
		err  error
	}
	// releaseDenied is a release_token that does not belong to the
	// request_id it names, or a request_id the broker does not know: one
	// refusal for both, so it tells a guesser nothing.
	releaseDenied struct{}
)

func (e *badRequest) Error() string { return e.reason }
func (e *tooLarge) Error() string {
	return fmt.Sprintf("request body is larger than %d KiB", MaxBodyBytes>>10)
}
func (e *denied) Error() string        { return e.reason }
func (e *replayed) Error() string      { return e.reason }
func (e *wrongEndpoint) Error() string { return e.reason }
func (e *throttled) Error() string     { return "too many requests" }
func (e *unavailable) Error() string   { return e.reason }
func (e *unavailable) Unwrap() error   { return e.err }
func (e *routeError) Error() string    { return string(e.code) }
func (e *atCapacity) Error() string {
	return "the broker holds its limit of live tokens and takes no new one until the oldest expires; try again later"
}
func (e *atCapacity) Unwrap() error { return e.err }
func (e *releaseDenied) Error() string {
	return "release_token does not belong to that request_id, or the request is unknown"
}

func badRequestf(format string, args ...any) error {
	return &badRequest{reason: fmt.Sprintf(format, args...)}
}

// retrySoon is the Retry-After of a failure the broker expects to pass.
const retrySoon = 5 * time.Second

// classify is the one place an error becomes a contract error: every
// refusal the broker answers or audits passes through it. An error it does
// not know is `unavailable`, since a failure nobody anticipated must
// neither grant anything nor read as the caller's fault.
func classify(err error) *Error {
	var (
		e      *Error
		bad    *badRequest
		big    *tooLarge
		deny   *denied
		replay *replayed
		wrong  *wrongEndpoint
		thr    *throttled
		un     *unavailable
		route  *routeError
		full   *atCapacity
		form   *formError
		tok    *identity.TokenError
		keys   *identity.UnavailableError
		up     *grant.UpstreamError
		grantE *grant.BadGrantError
		grantU *grant.UnavailableError
		relD   *releaseDenied
		relIn  *grant.ReleaseInputError
	)
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &bad):
		return &Error{Code: InvalidRequest, Description: bad.reason}
	case errors.As(err, &form):
		return &Error{Code: InvalidRequest, Description: form.reason, Err: err}
	case errors.As(err, &big):
		return &Error{Code: RequestTooLarge, Description: big.Error()}
	case errors.As(err, &deny):
		return &Error{Code: AccessDenied, Description: deny.reason, Rule: deny.rule}
	case errors.As(err, &replay):
		return &Error{Code: InvalidToken, Description: replay.reason, Rule: "replay"}
	case errors.As(err, &wrong):
		return &Error{Code: InvalidRequest, Description: wrong.reason, Rule: "grant_type"}
	case errors.As(err, &thr):
		desc := "too many requests from this address"
		if thr.reason != "" {
			desc = thr.reason
		}
		return &Error{Code: RateLimited, Description: desc, Rule: thr.rule, RetryAfter: max(thr.wait, time.Second)}
	case errors.As(err, &relD):
		return &Error{Code: AccessDenied, Description: relD.Error(), Rule: "release_token"}
	case errors.As(err, &relIn):
		return &Error{Code: InvalidRequest, Description: relIn.Reason, Err: err}
	case errors.As(err, &route):
		desc := "no such endpoint"
		if route.code == MethodNotAllowed {
			desc = "method not allowed"
		}
		return &Error{Code: route.code, Description: desc}
	case errors.As(err, &tok):
		return &Error{Code: InvalidToken, Description: tok.Reason, Err: err}
	case errors.As(err, &keys):
		return &Error{Code: Unavailable, RetryAfter: keys.RetryAfter, Err: err,
			Description: fmt.Sprintf("cannot fetch the signing keys of issuer %q; try again", keys.Issuer)}
	case errors.As(err, &grantE):
		return &Error{Code: AccessDenied, Rule: trust.RuleGrant, Err: err,
			Description: "the policy's grant cannot be minted as written: " + grantE.Error()}
	case errors.As(err, &up):
		ce := &Error{Code: UpstreamError, Description: up.Error(), Err: &upstreamDetail{up}}
		if up.Transient {
			ce.RetryAfter = max(up.RetryAfter, retrySoon)
		}
		return ce
	case errors.As(err, &grantU):
		return &Error{Code: Unavailable, Description: grantU.Reason, RetryAfter: max(grantU.RetryAfter, time.Second), Err: err}
	case errors.As(err, &full):
		return &Error{Code: Unavailable, Description: full.Error(), RetryAfter: max(full.wait, time.Second), Err: full.err}
	case errors.As(err, &un):
		return &Error{Code: Unavailable, Description: un.reason, RetryAfter: retrySoon, Err: un.err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: Unavailable, Description: "request cancelled", RetryAfter: time.Second, Err: err}
	}
	return &Error{Code: Unavailable, Description: "the broker could not complete the request; try again", RetryAfter: retrySoon, Err: err}
}

// upstreamDetail is a provider failure as the server's log tells it: the
// caller's text, then the detail grant.UpstreamError keeps out of its own
// (the address tried, the SDK's words), each cause once.
type upstreamDetail struct{ up *grant.UpstreamError }

func (d *upstreamDetail) Error() string {
	var b strings.Builder
	b.WriteString(d.up.Error())
	for e := d.up.Err; e != nil; e = errors.Unwrap(e) {
		if msg := e.Error(); !strings.Contains(b.String(), msg) {
			b.WriteString(": ")
			b.WriteString(msg)
		}
	}
	return b.String()
}

func (d *upstreamDetail) Unwrap() error { return d.up }
