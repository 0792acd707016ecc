package replay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClaimPutter is a Store and Records that can claim a key and put a
// record in one atomic step: for Redis one round trip where Claim then Put
// take two. The exchange uses it for grants that are made inside the
// broker, so that it can claim the token only once the grant's release
// record is ready and keep both at once.
type ClaimPutter interface {
	Store
	Records
	// ClaimPut claims key until expiry, as Claim does, and puts value
	// under recordKey until recordExpiry, as Put does: both or neither.
	// It returns false, changing nothing, when key is already claimed.
	// A recordKey that holds a live value is ErrRecordTaken, and changes
	// nothing either.
	ClaimPut(ctx context.Context, key string, expiry time.Time, recordKey string, value []byte, recordExpiry time.Time) (bool, error)
}

// ErrRecordTaken is ClaimPut's answer when the record's key is taken.
var ErrRecordTaken = errors.New("record put: the key holds a live value")

var (
	_ ClaimPutter = (*Memory)(nil)
	_ ClaimPutter = (*Redis)(nil)
)

func checkClaimPut(key string, expiry time.Time, recordKey string, value []byte, recordExpiry, now time.Time) error {
	return errors.Join(checkClaim(key, expiry, now), checkPut(recordKey, value, recordExpiry, now))
}

// ClaimPut implements ClaimPutter under the store's one lock.
func (m *Memory) ClaimPut(ctx context.Context, key string, expiry time.Time, recordKey string, value []byte, recordExpiry time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("replay claim: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if err := checkClaimPut(key, expiry, recordKey, value, recordExpiry, now); err != nil {
		return false, err
	}
	at := unixNano(now)
	m.claims.sweep(at, nil)
	m.sweepRecords(at)
	k, rk := sha256.Sum256([]byte(key)), sha256.Sum256([]byte(recordKey))
	if _, ok := m.claims.live(k, at); ok {
		return false, nil
	}
	if _, ok := m.records.live(rk, at); ok {
		return false, ErrRecordTaken
	}
	if err := errors.Join(m.roomForClaim(now), m.roomForRecord(len(value))); err != nil {
		return false, err
	}
	m.claims.add(k, struct{}{}, unixNano(expiry))
	m.addRecord(rk, value, recordExpiry)
	return true, nil
}

// claimPutScript is ClaimPut in one step: the claim's key, then the
// record's; the claim's PXAT, the record's value and its PXAT. It answers
// 1 for both kept, 0 for a key already claimed, -1 for a record key taken.
var claimPutScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
return 1
`)

// ClaimPut implements ClaimPutter with one Lua script, which Redis runs
// atomically: no other replica's command runs between its steps.
func (r *Redis) ClaimPut(ctx context.Context, key string, expiry time.Time, recordKey string, value []byte, recordExpiry time.Time) (bool, error) {
	if err := checkClaimPut(key, expiry, recordKey, value, recordExpiry, time.Now()); err != nil {
		return false, err
	}
	keys := []string{redisKey(key), redisRecordKey(recordKey)}
	res, err := claimPutScript.Run(ctx, r.client, keys, pxat(expiry), value, pxat(recordExpiry)).Int64()
	if err != nil {
		return false, fmt.Errorf("replay claim: redis: %w", err)
	}
	switch res {
	case 1:
		return true, nil
	case 0:
		return false, nil
	case -1:
		return false, ErrRecordTaken
	}
	return false, fmt.Errorf("replay claim: redis answered %d to the claim script", res)
}
