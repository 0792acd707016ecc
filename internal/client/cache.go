package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"
)

// The credential cache behind `ferry exchange --format credential-process
// --cache FILE`: one file per policy, readable by its owner only, in the
// format the GitHub Action's credential_process uses too.
//
// AWS SDKs ask a credential_process again well before a credential
// expires: botocore whenever fewer than 15 minutes remain, which for a
// 15-minute grant is every use; aws-sdk-go-v2 at expiry, or earlier by its
// ExpiryWindow. The cache hands back what it holds while more than the
// refresh margin remains, min(15m, half the credential's lifetime), and
// exchanges only after, so a job spends one grant per credential lifetime
// instead of one per command. It also records which CI tokens it spent:
// GitLab gives a job one token per id_tokens entry, and a token is
// single-use per policy, so a spent one is never sent again.

// CacheVersion is the cache file format.
const CacheVersion = 1

// MaxRefreshMargin is botocore's advisory refresh window.
const MaxRefreshMargin = 15 * time.Minute

// LockStale is how long a cache lock may be held before another process
// takes it over; one exchange with every retry fits well inside.
const LockStale = 2 * time.Minute

// ProcessCredential is the AWS SDKs' credential_process JSON.
type ProcessCredential struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	SessionToken    string `json:"SessionToken"`
	Expiration      string `json:"Expiration"`
}

// CacheEntry is one cache file.
type CacheEntry struct {
	Version    int               `json:"version"`
	Policy     string            `json:"policy"`
	RequestID  string            `json:"request_id"`
	ObtainedAt time.Time         `json:"obtained_at"`
	Credential ProcessCredential `json:"credential"`
	// History names every credential this cache has held (no secrets), for
	// whoever ends the job's credentials.
	History []CacheHistory `json:"history,omitempty"`
	// SpentTokens are the SHA-256 digests of the CI tokens exchanged for
	// this policy.
	SpentTokens []string `json:"spent_tokens,omitempty"`
}

// CacheHistory is one credential the cache held.
type CacheHistory struct {
	RequestID   string `json:"request_id"`
	AccessKeyID string `json:"access_key_id"`
	Expiration  string `json:"expiration"`
}

// historyLimit bounds the lists a long job's cache accumulates.
const historyLimit = 50

func (e *CacheEntry) expiration() time.Time {
	t, err := time.Parse(time.RFC3339, e.Credential.Expiration)
	if err != nil {
		return time.Time{}
	}
	return t
}

// RefreshMargin is how much life the held credential must have left to be
// handed back.
func (e *CacheEntry) RefreshMargin() time.Duration {
	life := e.expiration().Sub(e.ObtainedAt)
	if life <= 0 {
		return 0
	}
	return min(MaxRefreshMargin, life/2)
}

// Fresh reports whether the entry may be handed back for policy at now.
func (e *CacheEntry) Fresh(policy string, now time.Time) bool {
	return e != nil && e.Policy == policy && e.expiration().Sub(now) > e.RefreshMargin()
}

// Unexpired reports whether the held credential still works at now.
func (e *CacheEntry) Unexpired(now time.Time) bool {
	return e != nil && e.expiration().After(now)
}

// Spent reports whether token was already exchanged for this policy.
func (e *CacheEntry) Spent(token string) bool {
	if e == nil {
		return false
	}
	d := tokenDigest(token)
	for _, s := range e.SpentTokens {
		if s == d {
			return true
		}
	}
	return false
}

func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NextEntry is the entry after exchanging token for res at now, keeping
// prev's history and spent tokens when prev is for the same policy.
func NextEntry(prev *CacheEntry, res *Result, token string, now time.Time) (*CacheEntry, error) {
	if res.AWS == nil {
		return nil, fmt.Errorf("policy %q granted no aws credential; --format credential-process needs an aws grant", res.Policy)
	}
	a := res.AWS
	e := &CacheEntry{
		Version:    CacheVersion,
		Policy:     res.Policy,
		RequestID:  res.RequestID,
		ObtainedAt: now.UTC(),
		Credential: ProcessCredential{
			Version: 1, AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey,
			SessionToken: a.SessionToken, Expiration: a.Expiration.UTC().Format(time.RFC3339),
		},
	}
	if prev != nil && prev.Policy == res.Policy {
		e.History = append(e.History, prev.History...)
		e.SpentTokens = append(e.SpentTokens, prev.SpentTokens...)
	}
	e.History = lastN(append(e.History, CacheHistory{res.RequestID, a.AccessKeyID, e.Credential.Expiration}), historyLimit)
	if token != "" {
		e.SpentTokens = lastN(append(e.SpentTokens, tokenDigest(token)), historyLimit)
	}
	return e, nil
}

func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// ReadCache returns the entry in path; nil when there is none or it cannot
// be used (another version, a torn write), since a miss costs at most one
// exchange. Only an unreadable file is an error.
func ReadCache(path string) (*CacheEntry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credential cache: %w", err)
	}
	var e CacheEntry
	if json.Unmarshal(data, &e) != nil || e.Version != CacheVersion || e.Policy == "" ||
		e.Credential.AccessKeyID == "" || e.Credential.SecretAccessKey == "" || e.Credential.SessionToken == "" ||
		e.expiration().IsZero() || e.ObtainedAt.IsZero() {
		return nil, nil
	}
	return &e, nil
}

// WriteCache replaces path atomically with a file only its owner can read.
func WriteCache(path string, e *CacheEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode credential cache: %w", err)
	}
	tmp := path + "." + strconv.Itoa(os.Getpid()) + "." + randomHex()[:8] + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write credential cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write credential cache: %w", err)
	}
	return nil
}

// WithCacheLock runs fn while holding path's lock file, so processes that
// SDKs start at the same moment exchange once between them. A lock older
// than LockStale belongs to a process that died mid-exchange and is taken
// over; the cache itself is written atomically, so that loses nothing.
func WithCacheLock(ctx context.Context, path string, fn func() error) error {
	lock := path + ".lock"
	deadline := time.Now().Add(LockStale + 10*time.Second)
	for {
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprint(f, os.Getpid())
			f.Close()
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("lock credential cache: %w", err)
		}
		if st, err := os.Stat(lock); err == nil && time.Since(st.ModTime()) > LockStale {
			os.Remove(lock)
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lock credential cache: %s stayed locked for over %s", lock, LockStale)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock credential cache: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer os.Remove(lock)
	return fn()
}
