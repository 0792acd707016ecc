package exchange

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/replay"
)

// revocationMargin keeps a revoked id listed a little past its
// credential's expiry, for replicas whose clocks run slightly behind.
const revocationMargin = time.Minute

// lockPoll is how often a waiting Lock tries again.
const lockPoll = 50 * time.Millisecond

// kindShared is grant.Shared on the records store, every key scoped to one
// kind, so kinds share the store and nothing else.
type kindShared struct {
	records replay.Records
	kind    string
	now     func() time.Time
}

func (s *Service) shared(kind string) grant.Shared {
	return kindShared{records: s.d.Records, kind: kind, now: s.d.Now}
}

func (k kindShared) key(space, name string) string {
	return "shared\x00" + k.kind + "\x00" + space + "\x00" + name
}

// Revoke implements grant.Shared.
func (k kindShared) Revoke(ctx context.Context, id string, until time.Time) error {
	if id == "" {
		return errors.New("revoke: empty id")
	}
	until = until.Add(revocationMargin)
	if !until.After(k.now()) {
		return nil // expired already: nothing left to refuse
	}
	if _, err := k.records.Put(ctx, k.key("revoked", id), []byte("1"), until); err != nil {
		return fmt.Errorf("revoke %s %s: %w", k.kind, id, err)
	}
	return nil // revoked now, or already
}

// Revoked implements grant.Shared.
func (k kindShared) Revoked(ctx context.Context, id string) (bool, error) {
	if id == "" {
		return false, errors.New("revoked: empty id")
	}
	_, ok, err := k.records.Get(ctx, k.key("revoked", id))
	if err != nil {
		return false, fmt.Errorf("read %s revocation list: %w", k.kind, err)
	}
	return ok, nil
}

// Lock implements grant.Shared with a record put only if absent (SET NX
// in Redis) that lapses after ttl. Unlock deletes it only while it is
// still this holder's, so a holder that outlived its ttl cannot free the
// next holder's lock.
func (k kindShared) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		return nil, errors.New("lock: ttl must be positive")
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	holder := []byte(hex.EncodeToString(b))
	key := k.key("lock", name)
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		ok, err := k.records.Put(ctx, key, holder, k.now().Add(ttl))
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if ok {
			return func() {
				uctx := context.WithoutCancel(ctx)
				if v, held, err := k.records.Get(uctx, key); err == nil && held && bytes.Equal(v, holder) {
					_ = k.records.Delete(uctx, key)
				}
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: held by another release: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}
