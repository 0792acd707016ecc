package limit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix begins every key the Redis limiter writes; the rest is the hex
// SHA-256 of the bucket's key, so claim text never reaches Redis as a key.
const KeyPrefix = "ferry:limit:"

// takeScript is GCRA over every key in KEYS, all or nothing, in one atomic
// step. ARGV holds, for each key, its emission interval in microseconds and
// its burst. The clock is Redis's own (TIME), so replicas whose clocks
// disagree still share one bucket correctly. A bucket is one integer, the
// next arrival time in microseconds, and expires when it has refilled.
// It returns {0, 0} when the request was taken, else the microseconds to
// wait and the (1-based) index of the key that asked for them.
var takeScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, limited = 0, 0
local tats = {}
for i, key in ipairs(KEYS) do
  local every = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local nxt = tat + every
  local over = nxt - now - burst * every
  if over > wait then wait, limited = over, i end
  tats[i] = nxt
end
if wait > 0 then return {math.ceil(wait), limited} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000))
end
return {0, 0}
`)

// Redis is a Limiter shared by every replica that points at the same Redis.
// It holds nothing itself; Redis expires each bucket once it has refilled,
// so Redis holds only buckets in use. Every Redis error is returned:
// callers fail closed.
type Redis struct {
	client redis.Scripter
}

// NewRedis returns a limiter keeping its buckets in client's Redis (the
// replay store's, say: see replay.Redis.Client).
func NewRedis(client redis.Scripter) *Redis { return &Redis{client: client} }

// Take implements Limiter with one script run (EVALSHA, loading the script
// when Redis does not have it).
func (r *Redis) Take(ctx context.Context, buckets ...Bucket) (Result, error) {
	buckets, index := live(buckets)
	if len(buckets) == 0 {
		return allowed, nil
	}
	keys := make([]string, len(buckets))
	args := make([]any, 0, 2*len(buckets))
	for i, b := range buckets {
		sum := sha256.Sum256([]byte(b.Key))
		keys[i] = KeyPrefix + hex.EncodeToString(sum[:])
		args = append(args, max(b.Rate.Every.Microseconds(), 1), b.Rate.Burst)
	}
	out, err := takeScript.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("rate limit: redis: %w", err)
	}
	if len(out) != 2 || out[1] < 0 || out[1] > int64(len(buckets)) {
		return Result{}, fmt.Errorf("rate limit: redis: the script answered %v", out)
	}
	if out[0] <= 0 {
		return allowed, nil
	}
	return Result{Wait: time.Duration(out[0]) * time.Microsecond, Limited: index[out[1]-1]}, nil
}
