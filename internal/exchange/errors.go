package exchange

import (
	"errors"
	"fmt"
	"net/http"
	"time"
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

// Error is a refused exchange. Description is shown to the caller and must
// never hold a token or secret; Err is the detail for the server's log.
type Error struct {
	Code        Code
	Description string
	// Rule is the policy rule that decided a denial ("match.ref",
	// "deny[0]", "unknown_policy"), for the audit record and RFC 8693's
	// invalid_target.
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

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// AsError converts any error into an *Error: unknown errors become
// `unavailable`, since a failure the broker did not anticipate must neither
// grant anything nor read as the caller's fault.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Unavailable, Description: "the broker could not complete the request; try again", RetryAfter: 5 * time.Second, Err: err}
}
