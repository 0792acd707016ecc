package grant

import (
	"context"
	"time"
)

// Shared is state a kind keeps past one call and across replicas: which
// credentials it revoked, and locks for read-modify-write at a provider.
//
// The exchange implements it on the replay store and hands it to each
// call that needs it (ReleaseRequest.Shared, Introspector.Introspect)
// rather than each kind holding a store of its own: every name is scoped
// to the kind, so kinds cannot step on each other's keys; a minter built
// by hand (tests, the demo) gets the same state as one built from the
// config; and a kind cannot reach the replay store's token ids at all.
type Shared interface {
	// Revoke puts id on the kind's revocation list until until, the
	// credential's own expiry, after which it no longer matters. Revoking
	// an id twice is not an error.
	Revoke(ctx context.Context, id string, until time.Time) error
	// Revoked reports whether id is on the kind's revocation list. An
	// error means the list could not be read: callers fail closed.
	Revoked(ctx context.Context, id string) (bool, error)
	// Lock takes the lock of that name, one holder across every replica,
	// waiting for it until ctx ends. Should its holder die, the lock lapses
	// after ttl. unlock gives it back.
	Lock(ctx context.Context, name string, ttl time.Duration) (unlock func(), err error)
}

// Introspector is implemented by minters whose credentials a resource
// server may check with the broker (RFC 7662, POST /v1/introspect).
type Introspector interface {
	// Introspect returns the token's claims when it is a credential this
	// minter issued, still live and not revoked; nil and no error when it
	// is not (malformed, foreign, expired, revoked). An error means the
	// minter could not tell, for instance because shared is unreachable.
	Introspect(ctx context.Context, token string, shared Shared, now time.Time) (map[string]any, error)
}

// ReleaseInputError says a release lacks what the kind needs to end the
// credential (GitHub's token itself, say): the caller's to fix, 400.
type ReleaseInputError struct {
	Reason string
}

func (e *ReleaseInputError) Error() string { return e.Reason }
