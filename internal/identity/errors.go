package identity

import (
	"fmt"
	"time"
)

// TokenError is a token that is not acceptable: malformed, badly signed,
// from an unknown issuer, for another audience, expired, and so on. It maps
// to HTTP 401 invalid_token. Reason says what is wrong and is safe to show
// the caller: it never holds the token or its signature.
type TokenError struct {
	Reason string
	Err    error // detail for the server's log; may be nil
}

func (e *TokenError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("invalid token: %s: %v", e.Reason, e.Err)
	}
	return "invalid token: " + e.Reason
}

func (e *TokenError) Unwrap() error { return e.Err }

func tokenErrorf(format string, args ...any) *TokenError {
	return &TokenError{Reason: fmt.Sprintf(format, args...)}
}

// UnavailableError means an issuer's keys could not be fetched and none are
// cached, so no token of that issuer can be verified now. It maps to HTTP
// 503 with Retry-After; the token was neither accepted nor judged.
type UnavailableError struct {
	Issuer     string        // the issuer's config name
	RetryAfter time.Duration // when the next fetch may be attempted
	Err        error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("keys of issuer %q unavailable (retry after %s): %v", e.Issuer, e.RetryAfter, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }
