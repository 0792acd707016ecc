package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Refresh is one credential_process call backed by a cache file: it hands
// back the held credential while it is fresh, and otherwise exchanges the
// next unspent CI token and caches the answer.
type Refresh struct {
	Cache  string
	Policy string
	// NextToken returns a CI token that spent does not know, fetched only
	// when an exchange is due.
	NextToken func(ctx context.Context, spent func(string) bool) (string, error)
	Exchange  func(ctx context.Context, token string) (*Result, error)
	Now       func() time.Time
	// Warn reports a refresh that failed while the held credential still
	// works (it is handed back instead).
	Warn func(string)
}

// Credential returns the credential to print.
func (r *Refresh) Credential(ctx context.Context) (*CacheEntry, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	var out *CacheEntry
	err := WithCacheLock(ctx, r.Cache, func() error {
		held, err := ReadCache(r.Cache)
		if err != nil {
			return err
		}
		if held != nil && held.Policy != r.Policy {
			return fmt.Errorf("cache %s holds a credential of policy %q, not %q: give each policy its own cache file", r.Cache, held.Policy, r.Policy)
		}
		if held.Fresh(r.Policy, now()) {
			out = held
			return nil
		}
		token, err := r.NextToken(ctx, held.Spent)
		var res *Result
		if err == nil {
			res, err = r.Exchange(ctx, token)
		}
		if err != nil {
			if held.Unexpired(now()) {
				if r.Warn != nil {
					r.Warn(fmt.Sprintf("refreshing policy %q failed (%v); handing back the cached credential, valid until %s", r.Policy, err, held.Credential.Expiration))
				}
				out = held
				return nil
			}
			return err
		}
		next, err := NextEntry(held, res, token, now())
		if err != nil {
			return err
		}
		if err := WriteCache(r.Cache, next); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// ErrTokensSpent means every CI token the job has was already exchanged
// for the policy.
var ErrTokensSpent = errors.New("every ID token of this job was already exchanged for this policy")

// maxIDTokens bounds the FERRY_ID_TOKEN_<n> variables looked at.
const maxIDTokens = 20

// NextToken finds a CI token for a cached exchange that spent does not
// know: the token file when one is given; in GitHub Actions a fresh token
// from the runner (each one new); in GitLab FERRY_ID_TOKEN, then
// FERRY_ID_TOKEN_2, FERRY_ID_TOKEN_3… (each an id_tokens entry, so each
// single-use per policy), the first not yet spent.
func NextToken(ctx context.Context, env Env, tokenFile, audience string, hc *http.Client, spent func(string) bool) (string, error) {
	if tokenFile != "" {
		tok, err := ReadTokenFile(tokenFile, strings.NewReader(""))
		if err != nil {
			return "", err
		}
		if spent(tok) {
			return "", fmt.Errorf("%w: the token in %s was already exchanged for it; write a fresh one there", ErrTokensSpent, tokenFile)
		}
		return tok, nil
	}
	if env("ACTIONS_ID_TOKEN_REQUEST_URL") != "" && env("ACTIONS_ID_TOKEN_REQUEST_TOKEN") != "" {
		return FindToken(ctx, env, audience, hc)
	}
	names := []string{"FERRY_ID_TOKEN"}
	for i := 2; i <= maxIDTokens; i++ {
		n := "FERRY_ID_TOKEN_" + strconv.Itoa(i)
		if strings.TrimSpace(env(n)) == "" {
			break
		}
		names = append(names, n)
	}
	if strings.TrimSpace(env("FERRY_ID_TOKEN")) == "" {
		return FindToken(ctx, env, audience, hc) // its error says where a token comes from
	}
	for _, n := range names {
		if tok := strings.TrimSpace(env(n)); !spent(tok) {
			return tok, nil
		}
	}
	return "", fmt.Errorf("%w (%s): GitLab gives a job one token per id_tokens entry and each is single-use per policy; "+
		"declare FERRY_ID_TOKEN_%d (same aud) for another refresh, or give the policy a duration that covers the job",
		ErrTokensSpent, strings.Join(names, ", "), len(names)+1)
}
