package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RecordPrefix begins every key Records writes to Redis, apart from
// Claim's KeyPrefix so a record can never pass for a used token id. The
// rest is the hex SHA-256 of the key.
const RecordPrefix = "ferry:record:"

func redisRecordKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return RecordPrefix + hex.EncodeToString(sum[:])
}

// pxat is expiry as Redis's PXAT, rounded up to the millisecond so a
// record never lapses early.
func pxat(expiry time.Time) int64 {
	at := expiry.UnixMilli()
	if expiry.After(time.UnixMilli(at)) {
		at++
	}
	return at
}

// Put implements Records with SET key value NX PXAT expiry: one atomic
// command, so of replicas racing on a key exactly one wins.
func (r *Redis) Put(ctx context.Context, key string, value []byte, expiry time.Time) (bool, error) {
	if err := checkPut(key, value, expiry, time.Now()); err != nil {
		return false, err
	}
	return r.set(ctx, "put", key, value, "NX", "PXAT", pxat(expiry))
}

// Replace implements Records with SET key value XX KEEPTTL.
func (r *Redis) Replace(ctx context.Context, key string, value []byte) (bool, error) {
	if err := errors.Join(checkRecordKey("replace", key), checkRecordValue("replace", value)); err != nil {
		return false, err
	}
	return r.set(ctx, "replace", key, value, "XX", "KEEPTTL")
}

func (r *Redis) set(ctx context.Context, op, key string, value []byte, args ...any) (bool, error) {
	res, err := r.client.Do(ctx, append([]any{"SET", redisRecordKey(key), value}, args...)...).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil // NX: taken; XX: nothing to replace
	}
	if err != nil {
		return false, fmt.Errorf("record %s: redis: %w", op, err)
	}
	if res != "OK" {
		return false, fmt.Errorf("record %s: redis answered %v to SET", op, res)
	}
	return true, nil
}

// Get implements Records.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkRecordKey("get", key); err != nil {
		return nil, false, err
	}
	v, err := r.client.Get(ctx, redisRecordKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("record get: redis: %w", err)
	}
	return v, true, nil
}

// Delete implements Records.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, redisRecordKey(key)).Err(); err != nil {
		return fmt.Errorf("record delete: redis: %w", err)
	}
	return nil
}
