package grant

import (
	"fmt"
	"time"
)

// BadGrantError says a policy's grant cannot be minted as written: a value
// the provider refuses before any call (a lifetime out of range, a
// malformed name that escaped the load checks). The fault is the policy
// owner's, not the provider's or the caller's.
type BadGrantError struct {
	Kind   string
	Field  string
	Reason string
}

func (e *BadGrantError) Error() string {
	return fmt.Sprintf("%s grant: %s: %s", e.Kind, e.Field, e.Reason)
}

// UpstreamError is a provider refusing or failing a mint. Its Error text is
// safe to show the caller: the provider's name with its error code and
// message when it answered, or only that it could not be reached; the
// network detail (addresses, endpoint names) stays in Err, for the server's
// log.
type UpstreamError struct {
	// Provider names the service, e.g. "AWS STS".
	Provider string
	// Code is the provider's error code (AccessDenied,
	// PERMISSION_DENIED); "" when it gave none or did not answer.
	Code string
	// Message is the provider's own explanation, or what went wrong in
	// words that name no internal host.
	Message string
	// Transient is set for failures worth retrying: throttling, a 5xx,
	// no answer.
	Transient bool
	// RetryAfter is when the provider asked to be tried again; 0 when it
	// did not say.
	RetryAfter time.Duration
	// Err is the detail, for the server's log only.
	Err error
}

func (e *UpstreamError) Error() string {
	s := e.Provider + " failed"
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// UnavailableError says this broker cannot mint now for a reason of its own
// (no minter for the kind, a local signing failure); the caller may try
// again later or at another broker.
type UnavailableError struct {
	Reason     string
	RetryAfter time.Duration
	Err        error
}

func (e *UnavailableError) Error() string { return e.Reason }

func (e *UnavailableError) Unwrap() error { return e.Err }
