package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/claims"
)

const (
	// fetchTimeout bounds one discovery+JWKS fetch even when the caller's
	// HTTP client has no timeout.
	fetchTimeout = 10 * time.Second
	// maxDocumentBytes bounds a discovery document or JWKS: real ones are a
	// few KiB, and an issuer must not be able to exhaust the broker's memory.
	maxDocumentBytes = 1 << 20
)

// keySet holds one issuer's verification keys. Keys are fetched lazily,
// refetched when a token names an unknown kid (at most once per minRefresh,
// with concurrent refreshes coalesced) and on a schedule (refresh.go), and
// the last good keys are kept when a refresh fails.
type keySet struct {
	issuer     string // config name, for errors and logs
	issuerURL  string
	jwksURL    string // configured; empty means discovery
	client     *http.Client
	minRefresh time.Duration
	interval   time.Duration // the most time between scheduled fetches
	now        func() time.Time
	log        *slog.Logger
	// after is the scheduler's timer: time.After, or a test's.
	after func(time.Duration) <-chan time.Time

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	fetchedAt   time.Time // last successful fetch
	attemptedAt time.Time // last fetch started
	failedAt    time.Time // last failed fetch
	lastErr     error     // outcome of the last finished fetch
	inflight    chan struct{}
	// maxAge is the Cache-Control max-age of the last good JWKS response,
	// when hasMaxAge; the schedule refetches sooner when it is shorter.
	maxAge    time.Duration
	hasMaxAge bool
	fetches   uint64 // finished fetches, for /metrics
	failures  uint64 // failed fetches, for /metrics
	failedRun int    // consecutive failed fetches, for the schedule's back-off
}

// lookup returns the keys that may have signed a token with this kid and
// alg. An unknown kid triggers a refresh when the rate limit allows one.
func (k *keySet) lookup(ctx context.Context, kid, alg string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	if keys := k.match(kid, alg); len(keys) > 0 {
		// A safety net for when the scheduler is not running (or is
		// stuck): keys older than the schedule allows are refetched in
		// the background, and still used meanwhile.
		if k.now().Sub(k.fetchedAt) > k.interval {
			k.startRefresh(ctx)
		}
		k.mu.Unlock()
		return keys, nil
	}
	done := k.startRefresh(ctx)
	k.mu.Unlock()

	if err := wait(ctx, done); err != nil {
		return nil, fmt.Errorf("wait for keys of issuer %q: %w", k.issuer, err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if keys := k.match(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	// The kid may belong to a key the issuer published after our last
	// good fetch; if that fetch failed we cannot say the token is bad.
	if len(k.keys) == 0 || k.lastErr != nil {
		return nil, k.unavailable()
	}
	if kid == "" {
		return nil, tokenErrorf("issuer %q has no key for algorithm %s", k.issuer, alg)
	}
	return nil, tokenErrorf("token key id %s is not among the keys of issuer %q for algorithm %s", claims.Describe(kid), k.issuer, alg)
}

// match returns the cached keys usable for kid and alg; an empty kid
// matches every key, as JWS allows. Caller holds mu.
func (k *keySet) match(kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range k.keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		// A key published for one algorithm is not used for another
		// (RFC 7517 section 4.4).
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		out = append(out, key)
	}
	return out
}

// refresh fetches keys now unless a fetch happened within minRefresh, and
// waits for the outcome: an error when the last fetch failed or no key is
// cached.
func (k *keySet) refresh(ctx context.Context) error {
	k.mu.Lock()
	done := k.startRefresh(ctx)
	k.mu.Unlock()
	if err := wait(ctx, done); err != nil {
		return fmt.Errorf("wait for keys of issuer %q: %w", k.issuer, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lastErr != nil || len(k.keys) == 0 {
		return k.unavailable()
	}
	return nil
}

// cached reports whether any key is cached.
func (k *keySet) cached() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys) > 0
}

// startRefresh starts a fetch unless one is running (then it returns that
// one's channel, so concurrent callers share it) or the last one started
// within minRefresh (then it returns nil). Caller holds mu.
func (k *keySet) startRefresh(ctx context.Context) <-chan struct{} {
	if k.inflight != nil {
		return k.inflight
	}
	now := k.now()
	if !k.attemptedAt.IsZero() && now.Sub(k.attemptedAt) < k.minRefresh {
		return nil
	}
	k.attemptedAt = now
	done := make(chan struct{})
	k.inflight = done
	// The fetch outlives the request that triggered it: other requests
	// wait on it, and one caller hanging up must not fail them all.
	fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	go func() {
		defer cancel()
		keys, cc, err := k.fetch(fetchCtx)
		k.mu.Lock()
		k.fetches++
		if err != nil {
			k.lastErr, k.failedAt = err, k.now()
			k.failures++
			k.failedRun++
			k.log.WarnContext(fetchCtx, "issuer key refresh failed; keeping the last good keys",
				"issuer", k.issuer, "cached_keys", len(k.keys), "error", err)
		} else {
			k.keys, k.fetchedAt, k.lastErr, k.failedRun = keys, k.now(), nil, 0
			k.maxAge, k.hasMaxAge = cc.maxAge, cc.ok
			k.log.DebugContext(fetchCtx, "issuer keys refreshed", "issuer", k.issuer, "keys", len(keys))
		}
		k.inflight = nil
		k.mu.Unlock()
		close(done)
	}()
	return done
}

func wait(ctx context.Context, done <-chan struct{}) error {
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unavailable describes why keys are missing. Caller holds mu.
func (k *keySet) unavailable() *UnavailableError {
	retry := k.minRefresh - k.now().Sub(k.attemptedAt)
	retry = max(time.Second, retry.Truncate(time.Second)+time.Second)
	err := k.lastErr
	if err == nil {
		err = errors.New("no usable keys")
	}
	return &UnavailableError{Issuer: k.issuer, RetryAfter: retry, Err: err}
}

// fetch reads the issuer's JWKS, finding it through discovery unless a
// JWKS URL is configured, and returns the keys and the JWKS response's
// Cache-Control lifetime.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, cacheLifetime, error) {
	jwksURL := k.jwksURL
	if jwksURL == "" {
		var err error
		if jwksURL, err = k.discover(ctx); err != nil {
			return nil, cacheLifetime{}, err
		}
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	hdr, err := k.getJSON(ctx, jwksURL, &set)
	if err != nil {
		return nil, cacheLifetime{}, fmt.Errorf("fetch JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	var skipped []string
	for i, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			// RFC 7517 section 5: skip keys we do not understand.
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		if !key.IsPublic() || !key.Valid() || (key.Use != "" && key.Use != "sig") {
			// Symmetric or private keys never verify a CI token: a JWKS
			// that holds them is broken, and using them would be unsafe.
			skipped = append(skipped, fmt.Sprintf("key %d (kid %s): not a public signing key", i, claims.Describe(key.KeyID)))
			continue
		}
		keys = append(keys, key)
	}
	if len(skipped) > 0 {
		k.log.WarnContext(ctx, "issuer JWKS holds unusable keys", "issuer", k.issuer, "skipped", skipped)
	}
	if len(keys) == 0 {
		return nil, cacheLifetime{}, fmt.Errorf("JWKS at %s holds no usable public signing key", jwksURL)
	}
	return keys, parseCacheControl(hdr.Values("Cache-Control")), nil
}

// discover reads the issuer's discovery document and returns its jwks_uri,
// after checking that the document speaks for exactly this issuer.
func (k *keySet) discover(ctx context.Context) (string, error) {
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	u := strings.TrimSuffix(k.issuerURL, "/") + "/.well-known/openid-configuration"
	if _, err := k.getJSON(ctx, u, &doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != k.issuerURL {
		return "", fmt.Errorf("discovery: document at %s names issuer %s, want %q", u, claims.Describe(doc.Issuer), k.issuerURL)
	}
	if err := checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	return doc.JWKSURI, nil
}

func (k *keySet) getJSON(ctx context.Context, url string, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", url, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return resp.Header, nil
}

// verifySignature checks the token's one signature with each candidate key
// (more than one only when the token names no kid) and returns the payload
// the signature covers.
func verifySignature(jws *jose.JSONWebSignature, keys []jose.JSONWebKey) ([]byte, error) {
	for _, key := range keys {
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, fmt.Errorf("no key verifies the signature (tried %d)", len(keys))
}
