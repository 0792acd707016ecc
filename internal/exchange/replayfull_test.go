package exchange_test

import (
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/replay"
)

// storeClock is the replay store's own clock, moved by the test; the
// verifier keeps real time.
type storeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *storeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *storeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// A memory replay store at its cap refuses new tokens with 503 and a
// Retry-After of when its oldest entry expires, and never evicts a live
// entry to make room (that would let its token be replayed).
func TestAFullReplayStoreRefusesNewTokensAndKeepsTheLiveOnes(t *testing.T) {
	clock := &storeClock{}
	store := replay.NewMemory(replay.WithClock(clock.Now), replay.WithMaxEntries(2))
	// Release records, which outlive the token ids, are kept apart here:
	// this test is about the token ids' cap.
	h := newHarness(t, harnessOpts{replay: store, records: replay.NewMemory()})
	expiresIn := func(d time.Duration) func(map[string]any) {
		return func(c map[string]any) { c["exp"] = time.Now().Add(d).Unix() }
	}
	first := h.sign(h.gh, "github-push-main", expiresIn(2*time.Minute))
	second := h.sign(h.gh, "github-push-main", expiresIn(10*time.Minute))
	third := h.sign(h.gh, "github-push-main", expiresIn(10*time.Minute))
	for _, tok := range []string{first, second} {
		if r := h.exchange("artifacts", tok, nil); r.status != 200 {
			t.Fatalf("filling the store: %d %s", r.status, r.raw)
		}
	}

	r := h.exchange("artifacts", third, nil)
	wantError(t, r, 503, "unavailable")
	if d := r.str("error_description"); !strings.Contains(d, "live tokens") || strings.Contains(d, "unreachable") {
		t.Errorf("error_description %q should say the broker is at its limit of live tokens", d)
	}
	// The first entry lives until its token's exp plus the 60 s leeway.
	wait, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || wait < 150 || wait > 181 {
		t.Errorf("Retry-After %q, want the ~180 s until the oldest entry expires", r.header.Get("Retry-After"))
	}
	// Through /v1/token too, in its own shape.
	tr := h.tokenExchange(tokenForm("artifacts", third))
	if tr.status != 503 || tr.str("error") != "temporarily_unavailable" || tr.header.Get("Retry-After") == "" {
		t.Errorf("/v1/token at the cap: %d %s", tr.status, tr.raw)
	}

	// Live entries were kept: their tokens still cannot be replayed.
	for _, tok := range []string{first, second} {
		wantError(t, h.exchange("artifacts", tok, nil), 401, "invalid_token")
	}

	// Once the oldest expires there is room, and the refused token, never
	// claimed, works.
	clock.Advance(time.Duration(wait+1) * time.Second)
	if r := h.exchange("artifacts", third, nil); r.status != 200 {
		t.Fatalf("after the oldest entry expired: %d %s", r.status, r.raw)
	}
	if r := h.exchange("artifacts", second, nil); r.status != 401 {
		t.Errorf("replay of a live token after room was made: %d %s", r.status, r.raw)
	}

	var full int
	for _, rec := range h.auditRecords() {
		if rec.Decision == audit.Deny && rec.Error == "unavailable" {
			full++
		}
	}
	if full != 2 {
		t.Errorf("%d refusals at the cap audited, want 2", full)
	}
	if !strings.Contains(h.logs.String(), "replay store full") {
		t.Error("the server log does not say the replay store is full")
	}
}

// tokenForm is an RFC 8693 request for policy with tok.
func tokenForm(policy, tok string) url.Values {
	return url.Values{
		"grant_type":         {exchange.GrantTypeTokenExchange},
		"subject_token":      {tok},
		"subject_token_type": {exchange.TokenTypeIDToken},
		"audience":           {policy},
	}
}

// Records at their bound refuse a grant the same way whichever path keeps
// it: the token kind's one step (claim and record together) and aws's
// claim then record. The token is not spent either way.
func TestFullReleaseRecordsRefuseTheGrantAndKeepTheToken(t *testing.T) {
	for _, p := range []struct{ policy, sample string }{
		{"artifacts", "github-push-main"},
		{"deploy-prod", "github-environment-production"},
	} {
		t.Run(p.policy, func(t *testing.T) {
			store := replay.NewMemory(replay.WithMaxRecordBytes(16))
			h := newHarness(t, harnessOpts{replay: store, awsMinter: &flakyAWS{ok: true}})
			tok := h.sign(h.gh, p.sample, nil)
			r := h.exchange(p.policy, tok, nil)
			wantError(t, r, 503, "unavailable")
			if !strings.Contains(r.str("error_description"), "could not record the grant for release") {
				t.Errorf("description %q, want the release record named", r.str("error_description"))
			}
			if store.Len() != 0 {
				t.Errorf("%d token ids claimed after a refused grant, want none", store.Len())
			}
		})
	}
}
