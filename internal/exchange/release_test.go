package exchange_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/replay"
	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

// replica is one broker of a release test, over real loopback HTTP with
// real policies, a real audit file, a real token signer and the replay
// store it is given (memory, or a real redis-server shared by replicas).
type replica struct {
	t         *testing.T
	srv       *httptest.Server
	auditPath string
	logs      *syncBuffer
}

type replicaOpts struct {
	gh, gl *devissuer.Issuer
	store  replay.Store
	key    *tokensign.Key // the signing key every replica shares
	now    func() time.Time
	// tokenMinter replaces the token kind's minter (a wrapper around the
	// signer); aws mints through a fake STS unless set.
	tokenMinter func(*tokensign.Signer) grant.Minter
	noGCP       bool
}

func newReplica(t *testing.T, o replicaOpts) *replica {
	t.Helper()
	r := &replica{t: t, logs: &syncBuffer{}}
	parts := newServiceParts(t, r.logs, o.gh, o.gl, nil)
	logger, pool, policies, auditLog := parts.logger, parts.pool, parts.policies, parts.auditLog
	r.auditPath = parts.auditPath
	signer, err := tokensign.NewSigner("https://ferry.example.com", o.key)
	if err != nil {
		t.Fatal(err)
	}
	minters := map[string]grant.Minter{
		tokensign.KindName: signer,
		awssts.KindName:    awssts.GrantMinter{STS: &flakyAWS{ok: true}},
	}
	if o.tokenMinter != nil {
		minters[tokensign.KindName] = o.tokenMinter(signer)
	}
	if !o.noGCP {
		g := gcpfake.Start(t, nil)
		gm, err := gcpiam.New(context.Background(), g.ClientOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gm.Close() })
		minters[gcpiam.KindName] = gm
	}
	svc, err := exchange.New(exchange.Deps{
		Verifier: pool, Policies: policies, Replay: o.store, Audit: auditLog,
		Kinds: registry.Kinds(), Platforms: registry.Platforms(), Minters: minters,
		Logger: logger, Metrics: exchange.NewMetrics(policies.Known), Now: o.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(exchange.NewHandler(svc, exchange.HTTPOptions{Logger: logger, Discovery: signer}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replica) post(path, contentType, body string) response {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	return r.do(req)
}

func (r *replica) do(req *http.Request) response {
	r.t.Helper()
	return send(r.t, r.srv, req)
}

func (r *replica) exchange(policy, token string) response {
	r.t.Helper()
	b, _ := json.Marshal(map[string]string{"policy": policy, "token": token})
	return r.post("/v1/exchange", "application/json", string(b))
}

func (r *replica) release(requestID, releaseToken string) response {
	r.t.Helper()
	b, _ := json.Marshal(map[string]string{"request_id": requestID, "release_token": releaseToken})
	return r.post("/v1/release", "application/json", string(b))
}

func (r *replica) introspect(token string) response {
	r.t.Helper()
	return r.post("/v1/introspect", "application/x-www-form-urlencoded", url.Values{"token": {token}}.Encode())
}

func (r *replica) active(token string) bool {
	r.t.Helper()
	resp := r.introspect(token)
	if resp.status != 200 {
		r.t.Fatalf("introspect: %d %s", resp.status, resp.raw)
	}
	active, ok := resp.body["active"].(bool)
	if !ok {
		r.t.Fatalf("introspection has no boolean active: %s", resp.raw)
	}
	return active
}

func (r *replica) auditRecords() []audit.Record {
	r.t.Helper()
	h := &harness{t: r.t, auditPath: r.auditPath}
	return h.auditRecords()
}

// grant is a 200 answer's release handle.
type grantAnswer struct {
	requestID, releaseToken, token string
	expiresAt                      time.Time
}

func mustGrant(t *testing.T, r response) grantAnswer {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	g := grantAnswer{requestID: r.str("request_id"), releaseToken: r.str("release_token")}
	g.expiresAt, _ = time.Parse(time.RFC3339, r.str("expires_at"))
	if tok := r.obj("token"); tok != nil {
		g.token, _ = tok["token"].(string)
	}
	raw, err := base64.RawURLEncoding.DecodeString(g.releaseToken)
	if err != nil || len(raw) < 16 {
		t.Fatalf("release_token %q is not base64url of at least 128 bits (%d bytes, %v)", g.releaseToken, len(raw), err)
	}
	return g
}

func startReplica(t *testing.T) (*replica, *devissuer.Issuer) {
	gh, gl := issuers.Start(t)
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return newReplica(t, replicaOpts{gh: gh, gl: gl, store: replay.NewMemory(), key: key}), gh
}

func TestReleaseRevokesAFerryTokenAndAuditsIt(t *testing.T) {
	r, gh := startReplica(t)
	ciToken := issuers.Sign(t, gh, "github-push-main", nil)
	g := mustGrant(t, r.exchange("artifacts", ciToken))
	if !r.active(g.token) {
		t.Fatal("a fresh Ferry token introspects inactive")
	}

	rel := r.release(g.requestID, g.releaseToken)
	if rel.status != 200 || rel.str("request_id") != g.requestID || rel.body["released"] != true || rel.body["revoked"] != true || rel.str("detail") == "" {
		t.Fatalf("release: %d %s", rel.status, rel.raw)
	}
	if rel.header.Get("Cache-Control") != "no-store" {
		t.Errorf("release answer Cache-Control = %q", rel.header.Get("Cache-Control"))
	}
	if r.active(g.token) {
		t.Error("a released Ferry token still introspects active")
	}

	// A second release changes nothing and says so.
	again := r.release(g.requestID, g.releaseToken)
	if again.status != 200 || again.body["released"] != true || again.body["revoked"] != true || !strings.Contains(again.str("detail"), "already released") {
		t.Fatalf("second release: %d %s", again.status, again.raw)
	}

	recs := r.auditRecords()
	if len(recs) != 3 {
		t.Fatalf("%d audit records, want allow, release, release", len(recs))
	}
	allow, first, second := recs[0], recs[1], recs[2]
	for _, rec := range []audit.Record{first, second} {
		if rec.Decision != audit.Release || rec.RequestID != g.requestID || rec.Policy != "artifacts" || rec.Error != "" ||
			rec.Credential == nil || rec.Credential.ID != allow.Credential.ID || rec.Claim("repository") != "acme/app" || rec.Released == nil {
			t.Fatalf("release record = %+v", rec)
		}
	}
	if !first.Released.Revoked || first.Released.Repeat || first.Released.GrantedSeconds != 600 ||
		first.Released.HeldSeconds < 0 || first.Released.HeldSeconds > 30 {
		t.Errorf("first release = %+v, want revoked, held a few seconds of 600 granted", first.Released)
	}
	if !second.Released.Repeat || !second.Released.Revoked || second.Released.HeldSeconds != first.Released.HeldSeconds {
		t.Errorf("second release = %+v, want a repeat that reports the first", second.Released)
	}

	// Neither the release token nor the credential reaches the audit or
	// the server log.
	file, logs := readFile(t, r.auditPath), r.logs.String()
	for _, secret := range []string{g.releaseToken, g.token, ciToken} {
		if strings.Contains(file, secret) || strings.Contains(logs, secret) {
			t.Errorf("a secret (%.8s…) was logged or audited", secret)
		}
	}
}

func TestEveryGrantCarriesAReleaseTokenAndEachKindReleasesAsItCan(t *testing.T) {
	r, gh := startReplica(t)
	tests := []struct {
		policy, sample string
		wantRevoked    bool
		wantDetail     string
	}{
		{"artifacts", "github-push-main", true, "is revoked"},
		{"deploy-prod", "github-environment-production", false, "aws credential cannot be ended early and expires by itself"},
		{"gcp-deploy", "github-push-main", false, "gcp credential cannot be ended early and expires by itself"},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			g := mustGrant(t, r.exchange(tt.policy, issuers.Sign(t, gh, tt.sample, nil)))
			rel := r.release(g.requestID, g.releaseToken)
			if rel.status != 200 || rel.body["released"] != true || rel.body["revoked"] != tt.wantRevoked || !strings.Contains(rel.str("detail"), tt.wantDetail) {
				t.Errorf("release: %d %s; want revoked %v and detail with %q", rel.status, rel.raw, tt.wantRevoked, tt.wantDetail)
			}
		})
	}
}

func TestReleaseRefusalsChangeNothing(t *testing.T) {
	r, gh := startReplica(t)
	g := mustGrant(t, r.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	other := mustGrant(t, r.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	valid := func(extra string) string {
		return `{"request_id":"` + g.requestID + `","release_token":"` + g.releaseToken + `"` + extra + `}`
	}
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"a wrong release token", `{"request_id":"` + g.requestID + `","release_token":"` + other.releaseToken + `"}`, 403, "access_denied"},
		{"another grant's request id", `{"request_id":"` + other.requestID + `","release_token":"` + g.releaseToken + `"}`, 403, "access_denied"},
		{"an unknown request id", `{"request_id":"01JUNKNOWNUNKNOWNUNKNOWN00","release_token":"` + g.releaseToken + `"}`, 403, "access_denied"},
		{"no request id", `{"release_token":"` + g.releaseToken + `"}`, 400, "invalid_request"},
		{"no release token", `{"request_id":"` + g.requestID + `"}`, 400, "invalid_request"},
		{"an unknown field", valid(`,"policy":"artifacts"`), 400, "invalid_request"},
		{"a key twice", valid(`,"request_id":"` + g.requestID + `"`), 400, "invalid_request"},
		{"a key in another case", `{"Request_ID":"` + g.requestID + `","release_token":"` + g.releaseToken + `"}`, 400, "invalid_request"},
		{"a number where a string goes", `{"request_id":1,"release_token":"` + g.releaseToken + `"}`, 400, "invalid_request"},
		{"data after the object", valid("") + ` {}`, 400, "invalid_request"},
		{"not an object", `["` + g.requestID + `"]`, 400, "invalid_request"},
		{"malformed JSON", `{"request_id":`, 400, "invalid_request"},
		{"a body over 64 KiB", valid(`,"token":"` + strings.Repeat("x", 65<<10) + `"`), 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := r.post("/v1/release", "application/json", tt.body)
			wantError(t, resp, tt.status, tt.code)
			if strings.Contains(resp.raw, g.releaseToken) || strings.Contains(resp.raw, other.releaseToken) {
				t.Errorf("the refusal echoes a release token: %s", resp.raw)
			}
		})
	}
	// A wrong token and an unknown request read the same: no oracle.
	wrong := r.release(g.requestID, other.releaseToken)
	unknown := r.release("01JUNKNOWNUNKNOWNUNKNOWN00", g.releaseToken)
	if wrong.str("error_description") != unknown.str("error_description") {
		t.Errorf("a wrong token (%q) and an unknown request (%q) are told apart", wrong.str("error_description"), unknown.str("error_description"))
	}
	if resp := r.do(mustRequest(t, http.MethodGet, r.srv.URL+"/v1/release")); resp.status != 405 {
		t.Errorf("GET /v1/release = %d", resp.status)
	}

	// None of it released anything: the token is live, and the real
	// release is the first.
	if !r.active(g.token) {
		t.Fatal("a refused release revoked the token")
	}
	rel := r.release(g.requestID, g.releaseToken)
	if rel.status != 200 || strings.Contains(rel.str("detail"), "already") {
		t.Fatalf("release after the refusals: %d %s", rel.status, rel.raw)
	}
	refused := 0
	for _, rec := range r.auditRecords() {
		if rec.Decision == audit.Release && rec.Error != "" {
			refused++
			if rec.Released != nil {
				t.Errorf("a refused release records what it did: %+v", rec)
			}
		}
	}
	if refused != len(tests)+2 {
		t.Errorf("%d refused releases audited, want %d", refused, len(tests)+2)
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestReleaseOfAnExpiredCredentialIsFine(t *testing.T) {
	gh, gl := issuers.Start(t)
	key, _ := tokensign.GenerateKey()
	clock := fakeclock.At(time.Now())
	r := newReplica(t, replicaOpts{gh: gh, gl: gl, key: key, now: clock.Now, noGCP: true,
		store: replay.NewMemory(replay.WithClock(clock.Now))})
	g := mustGrant(t, r.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	g2 := mustGrant(t, r.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))

	clock.Advance(10*time.Minute + time.Second) // the token grant lives 10m
	rel := r.release(g.requestID, g.releaseToken)
	if rel.status != 200 || rel.body["released"] != true || rel.body["revoked"] != false || !strings.Contains(rel.str("detail"), "expired") {
		t.Fatalf("release of an expired credential: %d %s", rel.status, rel.raw)
	}
	recs := r.auditRecords()
	last := recs[len(recs)-1]
	if last.Released == nil || !last.Released.Expired || last.Released.Revoked || last.Released.HeldSeconds != 600 {
		t.Errorf("release record = %+v, want expired, held the whole 600s", last.Released)
	}

	// Past the grace the broker keeps, the grant is forgotten: 403.
	clock.Advance(exchange.ReleaseGrace)
	wantError(t, r.release(g2.requestID, g2.releaseToken), 403, "access_denied")
}

// failingRelease wraps the signer with a Releaser that fails until told.
type failingRelease struct {
	*tokensign.Signer
	mu    sync.Mutex
	fails int
}

func (f *failingRelease) Release(ctx context.Context, req grant.ReleaseRequest) (grant.Released, error) {
	f.mu.Lock()
	fail := f.fails > 0
	f.fails--
	f.mu.Unlock()
	if fail {
		return grant.Released{}, &grant.UpstreamError{Provider: "Example", Code: "Throttled", Message: "slow down", Transient: true}
	}
	return f.Signer.Release(ctx, req)
}

func TestAFailedReleaseLetsTheJobTryAgain(t *testing.T) {
	gh, gl := issuers.Start(t)
	key, _ := tokensign.GenerateKey()
	var wrapped *failingRelease
	r := newReplica(t, replicaOpts{gh: gh, gl: gl, key: key, store: replay.NewMemory(), noGCP: true,
		tokenMinter: func(s *tokensign.Signer) grant.Minter { wrapped = &failingRelease{Signer: s, fails: 1}; return wrapped }})
	g := mustGrant(t, r.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	resp := r.release(g.requestID, g.releaseToken)
	wantError(t, resp, 502, "upstream_error")
	if !strings.Contains(resp.str("error_description"), "Throttled") || resp.header.Get("Retry-After") == "" {
		t.Errorf("502 = %s (Retry-After %q)", resp.raw, resp.header.Get("Retry-After"))
	}
	if !r.active(g.token) {
		t.Fatal("a failed release revoked the token")
	}
	rel := r.release(g.requestID, g.releaseToken)
	if rel.status != 200 || rel.body["revoked"] != true || strings.Contains(rel.str("detail"), "already") {
		t.Fatalf("retry: %d %s", rel.status, rel.raw)
	}
	if r.active(g.token) {
		t.Error("the retried release did not revoke the token")
	}
}

func TestIntrospectAnswersRFC7662(t *testing.T) {
	r, gh := startReplica(t)
	g := mustGrant(t, r.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	resp := r.introspect(g.token)
	if resp.status != 200 || resp.body["active"] != true || resp.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("introspect: %d %s", resp.status, resp.raw)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "repository", "ref", "sha"} {
		if _, ok := resp.body[k]; !ok {
			t.Errorf("introspection lacks %q: %s", k, resp.raw)
		}
	}
	if exp, ok := resp.body["exp"].(float64); !ok || int64(exp) != g.expiresAt.Unix() {
		t.Errorf("exp = %v, want %d", resp.body["exp"], g.expiresAt.Unix())
	}

	for name, tok := range map[string]string{
		"a CI token":         issuers.Sign(t, gh, "github-push-main", nil),
		"garbage":            "not-a-token",
		"a truncated token":  g.token[:len(g.token)-10],
		"a release token":    g.releaseToken,
		"a token with a nul": g.token + "\x00",
	} {
		if r.active(tok) {
			t.Errorf("%s introspects active", name)
		}
	}
	for _, tt := range []struct {
		name, contentType, body string
	}{
		{"no token", "application/x-www-form-urlencoded", "token_type_hint=access_token"},
		{"a JSON body", "application/json", `{"token":"` + g.token + `"}`},
		{"token twice", "application/x-www-form-urlencoded", "token=a&token=b"},
	} {
		resp := r.post("/v1/introspect", tt.contentType, tt.body)
		if resp.status != 400 || resp.str("error") != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", tt.name, resp.status, resp.raw)
		}
	}
	if resp := r.do(mustRequest(t, http.MethodGet, r.srv.URL+"/v1/introspect")); resp.status != 405 || resp.str("error") != "invalid_request" {
		t.Errorf("GET /v1/introspect = %d %s", resp.status, resp.raw)
	}
}

func TestReleaseOnOneReplicaIsSeenByTheOthers(t *testing.T) {
	srv := redisproc.Start(t)
	gh, gl := issuers.Start(t)
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	newStore := func() replay.Store {
		s, err := replay.NewRedis(context.Background(), srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := newReplica(t, replicaOpts{gh: gh, gl: gl, key: key, store: newStore(), noGCP: true})
	b := newReplica(t, replicaOpts{gh: gh, gl: gl, key: key, store: newStore(), noGCP: true})

	// Released on A, inactive on B; B knows it was released.
	g := mustGrant(t, a.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	if !b.active(g.token) {
		t.Fatal("replica B does not find A's fresh token active")
	}
	if rel := a.release(g.requestID, g.releaseToken); rel.status != 200 || rel.body["revoked"] != true {
		t.Fatalf("release on A: %d %s", rel.status, rel.raw)
	}
	if b.active(g.token) {
		t.Error("a token released on replica A introspects active on replica B")
	}
	if again := b.release(g.requestID, g.releaseToken); again.status != 200 || !strings.Contains(again.str("detail"), "already released") {
		t.Errorf("release again on B: %d %s", again.status, again.raw)
	}
	wantError(t, b.release(g.requestID, "wrong"+g.releaseToken[5:]), 403, "access_denied")

	// Both replicas releasing one grant at once: one ends it, the other
	// hears it was.
	g2 := mustGrant(t, b.exchange("artifacts", issuers.Sign(t, gh, "github-push-main", nil)))
	var wg sync.WaitGroup
	results := make([]response, 8)
	for i := range results {
		wg.Go(func() {
			rep := a
			if i%2 == 1 {
				rep = b
			}
			results[i] = rep.release(g2.requestID, g2.releaseToken)
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.status != 200 || res.body["released"] != true {
			t.Errorf("concurrent release %d: %d %s", i, res.status, res.raw)
		}
	}
	firsts := 0
	for _, rep := range []*replica{a, b} {
		for _, rec := range rep.auditRecords() {
			if rec.Decision == audit.Release && rec.RequestID == g2.requestID && rec.Released != nil && !rec.Released.Repeat {
				firsts++
			}
		}
	}
	if firsts != 1 {
		t.Errorf("%d releases of one grant took effect across the replicas, want exactly 1", firsts)
	}
	if a.active(g2.token) || b.active(g2.token) {
		t.Error("the concurrently released token is still active")
	}

	// With Redis gone, release and introspection fail closed (503), and
	// never answer "active".
	srv.Stop()
	wantError(t, a.release(g2.requestID, g2.releaseToken), 503, "unavailable")
	if resp := b.introspect(g.token); resp.status != 503 || resp.body["active"] == true {
		t.Errorf("introspect with Redis gone: %d %s", resp.status, resp.raw)
	}
}

// The token kind claims its jti and keeps its record in one step
// (ClaimPut); aws claims, mints, then keeps (Put). Both are checked.
var releaseRecordPaths = []struct{ policy, sample string }{
	{"artifacts", "github-push-main"},
	{"deploy-prod", "github-environment-production"},
}

func TestReleaseRecordsAreKeptHashedInTheStore(t *testing.T) {
	for _, p := range releaseRecordPaths {
		t.Run(p.policy, func(t *testing.T) {
			store := &recordingStore{Memory: replay.NewMemory()}
			r, gh := replicaOver(t, store)
			g := mustGrant(t, r.exchange(p.policy, issuers.Sign(t, gh, p.sample, nil)))
			r.release(g.requestID, g.releaseToken)
			if len(store.puts) == 0 {
				t.Fatal("nothing was put in the records store")
			}
			for _, p := range store.puts {
				if bytes.Contains(p, []byte(g.releaseToken)) || (g.token != "" && bytes.Contains(p, []byte(g.token))) {
					t.Errorf("the store holds a secret in %s", p)
				}
			}
			var rec struct {
				Hash      string    `json:"token_sha256"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			if err := json.Unmarshal(store.puts[0], &rec); err != nil || len(rec.Hash) != 64 || !rec.ExpiresAt.Equal(g.expiresAt) {
				t.Errorf("grant record = %s (%v)", store.puts[0], err)
			}
		})
	}
}

// replicaOver starts a replica (no GCP) over store, with its own issuers
// and signing key, and returns it with its GitHub issuer.
func replicaOver(t *testing.T, store replay.Store) (*replica, *devissuer.Issuer) {
	t.Helper()
	gh, gl := issuers.Start(t)
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return newReplica(t, replicaOpts{gh: gh, gl: gl, key: key, store: store, noGCP: true}), gh
}

// recordingStore is the real memory store that keeps a copy of each value
// put, to check what reaches it.
type recordingStore struct {
	*replay.Memory
	mu   sync.Mutex
	puts [][]byte
}

func (s *recordingStore) record(value []byte) {
	s.mu.Lock()
	s.puts = append(s.puts, append([]byte{}, value...))
	s.mu.Unlock()
}

func (s *recordingStore) Put(ctx context.Context, key string, value []byte, expiry time.Time) (bool, error) {
	s.record(value)
	return s.Memory.Put(ctx, key, value, expiry)
}

func (s *recordingStore) ClaimPut(ctx context.Context, key string, expiry time.Time, recordKey string, value []byte, recordExpiry time.Time) (bool, error) {
	s.record(value)
	return s.Memory.ClaimPut(ctx, key, expiry, recordKey, value, recordExpiry)
}

func TestAGrantThatCannotBeKeptForReleaseIsRefused(t *testing.T) {
	for _, p := range releaseRecordPaths {
		t.Run(p.policy, func(t *testing.T) {
			store := &failingRecords{Memory: replay.NewMemory()}
			r, gh := replicaOver(t, store)
			tok := issuers.Sign(t, gh, p.sample, nil)
			store.fail = true
			wantError(t, r.exchange(p.policy, tok), 503, "unavailable")
			// The token was not spent: the job may try again once the
			// store is back.
			store.fail = false
			mustGrant(t, r.exchange(p.policy, tok))
		})
	}
}

type failingRecords struct {
	*replay.Memory
	fail bool
}

func (s *failingRecords) Put(ctx context.Context, key string, value []byte, expiry time.Time) (bool, error) {
	if s.fail {
		return false, errors.New("redis: connection refused")
	}
	return s.Memory.Put(ctx, key, value, expiry)
}

func (s *failingRecords) ClaimPut(ctx context.Context, key string, expiry time.Time, recordKey string, value []byte, recordExpiry time.Time) (bool, error) {
	if s.fail {
		return false, errors.New("redis: connection refused")
	}
	return s.Memory.ClaimPut(ctx, key, expiry, recordKey, value, recordExpiry)
}
