package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

func newRedisStore(t *testing.T, s *redisproc.Server) *Redis {
	t.Helper()
	r, err := NewRedis(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// emptyRedisStore is newRedisStore on an emptied database, for a case
// that must start from nothing.
func emptyRedisStore(t *testing.T, s *redisproc.Server) *Redis {
	t.Helper()
	r := newRedisStore(t, s)
	if err := r.client.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedis(t *testing.T) {
	srv := redisproc.Start(t)
	runStoreCases(t, func(t *testing.T) harness {
		r := emptyRedisStore(t, srv)
		return harness{store: r, now: time.Now, wait: time.Sleep}
	})
}

func TestRedisKeysAreHashedUnderThePrefixWithTheExpiry(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRedisStore(t, srv)
	ctx := context.Background()
	key := "deploy-prod|jti with spaces\nand a newline"
	expiry := time.Now().Add(90 * time.Second)
	if ok, err := r.Claim(ctx, key, expiry); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(key))
	want := "ferry:replay:" + hex.EncodeToString(sum[:])
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys in redis = %q, want [%q]", keys, want)
	}
	at, err := raw.PExpireTime(ctx, want).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := time.UnixMilli(int64(at / time.Millisecond)); got.Before(expiry) || got.Sub(expiry) >= time.Millisecond {
		t.Errorf("key expires at %v, want %v rounded up to the millisecond", got, expiry)
	}
}

func TestRedisFailsClosedWhenTheServerGoesAway(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRedisStore(t, srv)
	ctx := context.Background()
	if ok, err := r.Claim(ctx, "before", time.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Claim while up = %v, %v", ok, err)
	}
	srv.Stop()
	ok, err := r.Claim(ctx, "after", time.Now().Add(time.Minute))
	if err == nil || ok {
		t.Errorf("Claim with the server gone = %v, %v; want false and an error", ok, err)
	}
	if err := r.Release(ctx, "before"); err == nil {
		t.Error("Release with the server gone returned no error")
	}
}

func TestNewRedisFailsWithoutAServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	if _, err := NewRedis(context.Background(), "redis://"+addr+"/0"); err == nil {
		t.Fatal("NewRedis with no server succeeded")
	} else if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not say which address failed", err)
	}
}

func TestNewRedisNeverEchoesThePassword(t *testing.T) {
	for _, u := range []string{
		"redis://:hunter2-secret@127.0.0.1:1/0%zz",
		"http://user:hunter2-secret@127.0.0.1:1/0",
		"redis://user:hunter2-secret@127.0.0.1:1/notanumber",
		"redis://user:hunter2-secret@127.0.0.1:1/0",
		"redis://user:hunter2-secret@[::1/0",
	} {
		_, err := NewRedis(context.Background(), u)
		if err == nil {
			t.Errorf("NewRedis(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewRedis error leaks the password: %v", err)
		}
	}
}
