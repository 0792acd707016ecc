package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix begins every key the Redis store writes. The rest is the hex
// SHA-256 of the claimed key, so arbitrary claim text (spaces, newlines,
// megabytes) never reaches Redis as a key.
const KeyPrefix = "ferry:replay:"

// connectTimeout bounds the ping NewRedis makes.
const connectTimeout = 5 * time.Second

// Redis is a Store shared by every replica that points at the same Redis.
// A claim is one atomic SET NX, so two replicas racing on one token cannot
// both win. Every Redis error is returned; callers fail closed.
type Redis struct {
	client *redis.Client
	health healthCache // see Healthy
}

// NewRedis connects to the Redis at rawURL (redis://[user:password@]host:port/db,
// rediss:// for TLS, or unix://) and pings it. Errors never repeat the URL,
// which may hold a password.
func NewRedis(ctx context.Context, rawURL string) (*Redis, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password included
		}
		return nil, fmt.Errorf("replay store: parse redis url: %w", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("replay store: connect to redis at %s: %w", opts.Addr, err)
	}
	return &Redis{client: client}, nil
}

// Claim implements Store with SET key 1 NX PXAT expiry. The expiry is
// rounded up to Redis's millisecond so a key never lapses early.
func (r *Redis) Claim(ctx context.Context, key string, expiry time.Time) (bool, error) {
	if err := checkClaim(key, expiry, time.Now()); err != nil {
		return false, err
	}
	res, err := r.client.Do(ctx, "SET", redisKey(key), "1", "NX", "PXAT", pxat(expiry)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil // already claimed
	}
	if err != nil {
		return false, fmt.Errorf("replay claim: redis: %w", err)
	}
	if res != "OK" {
		return false, fmt.Errorf("replay claim: redis answered %v to SET NX", res)
	}
	return true, nil
}

// Release implements Store with DEL.
func (r *Redis) Release(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, redisKey(key)).Err(); err != nil {
		return fmt.Errorf("replay release: redis: %w", err)
	}
	return nil
}

// Close closes the connections to Redis.
func (r *Redis) Close() error {
	return r.client.Close()
}

func redisKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return KeyPrefix + hex.EncodeToString(sum[:])
}
