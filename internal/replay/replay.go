// Package replay makes a token's jti single-use per policy for the token's
// lifetime.
package replay

import (
	"context"
	"time"
)

// Store remembers used token ids until they expire. Implementations must be
// safe for concurrent use and atomic across replicas that share them.
type Store interface {
	// Claim records key as used until expiry. It returns false when key was
	// already claimed and has not expired. An error means the store could not
	// answer; callers fail closed.
	Claim(ctx context.Context, key string, expiry time.Time) (bool, error)
	// Release forgets key, so a token whose exchange failed upstream (no
	// credential issued) can be presented again.
	Release(ctx context.Context, key string) error
}
