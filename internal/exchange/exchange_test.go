package exchange_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"google.golang.org/grpc/codes"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/replay"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
)

func TestExchangeRefusesWithTheContractsErrors(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	prod := func(edit func(map[string]any)) string { return h.sign(h.gh, "github-environment-production", edit) }

	tests := []struct {
		name   string
		do     func() response
		status int
		code   string
		// desc must appear in error_description.
		desc string
	}{
		{"malformed JSON", func() response {
			return h.post("/v1/exchange", "application/json", strings.NewReader(`{"policy":`), nil)
		}, 400, "invalid_request", "truncated JSON"},
		{"an unknown field", func() response {
			return h.post("/v1/exchange", "application/json", strings.NewReader(`{"policy":"deploy-prod","token":"x","polcy":"y"}`), nil)
		}, 400, "invalid_request", `unknown field "polcy"`},
		{"a missing policy", func() response { return h.exchange("", prod(nil), nil) }, 400, "invalid_request", `"policy"`},
		{"a missing token", func() response { return h.exchange("deploy-prod", "", nil) }, 400, "invalid_request", `"token"`},
		{"a bad duration", func() response {
			return h.exchange("artifacts", h.sign(h.gh, "github-push-main", nil), map[string]any{"duration": "soon"})
		}, 400, "invalid_request", `"soon"`},
		{"a duration longer than the policy's", func() response {
			return h.exchange("artifacts", h.sign(h.gh, "github-push-main", nil), map[string]any{"duration": "11m"})
		}, 400, "invalid_request", "longer than policy \"artifacts\" allows (10m0s)"},
		{"a body over 64 KiB", func() response {
			return h.exchange("artifacts", strings.Repeat("a", 70<<10), nil)
		}, 413, "request_too_large", "64 KiB"},
		{"a token that is not a JWT", func() response { return h.exchange("deploy-prod", "not-a-jwt", nil) }, 401, "invalid_token", ""},
		{"an unknown policy", func() response { return h.exchange("nope", prod(nil), nil) }, 403, "access_denied", `unknown policy "nope"`},
		{"the wrong branch", func() response {
			return h.exchange("deploy-prod", prod(func(c map[string]any) { c["ref"] = "refs/heads/dev" }), nil)
		}, 403, "access_denied", `claim "ref" = "refs/heads/dev"`},
		{"a missing environment", func() response {
			return h.exchange("deploy-prod", h.sign(h.gh, "github-push-main", nil), nil)
		}, 403, "access_denied", `"environment"`},
		{"a deny rule", func() response {
			return h.exchange("deploy-prod", prod(func(c map[string]any) { c["actor"] = "dependabot[bot]" }), nil)
		}, 403, "access_denied", "deny"},
		{"a GitLab token for a GitHub policy", func() response {
			return h.exchange("artifacts", h.sign(h.gl, "gitlab-protected-deploy", nil), nil)
		}, 403, "access_denied", "gitlab"},
		{"a GitLab job on an unprotected branch", func() response {
			return h.exchange("gitlab-deploy", h.sign(h.gl, "gitlab-unprotected-branch", nil), nil)
		}, 403, "access_denied", `"ref"`},
		{"a GitLab fork's merge request", func() response {
			return h.exchange("gitlab-deploy", h.sign(h.gl, "gitlab-fork-merge-request", nil), nil)
		}, 403, "access_denied", `"project_path"`},
		{"an unknown endpoint", func() response {
			return h.post("/v1/nope", "application/json", strings.NewReader("{}"), nil)
		}, 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.do()
			wantError(t, r, tt.status, tt.code)
			if !strings.Contains(r.str("error_description"), tt.desc) {
				t.Errorf("error_description %q does not mention %q", r.str("error_description"), tt.desc)
			}
		})
	}
	if n := len(h.gcp.Requests()); n != 0 {
		t.Errorf("%d GCP requests made by refused exchanges", n)
	}
}

func TestTokenAttacksAreRefusedAndMintNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	claims := func() map[string]any {
		c, err := sampleClaims("github-push-main")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token func() string
	}{
		{"alg none", func() string { return unsignedToken(t, h.gh.URL(), claims()) }},
		{"HS256 keyed with the issuer's public key", func() string { return hmacWithPublicKey(t, h.gh, claims()) }},
		{"an untrusted key behind the trusted kid", func() string {
			c := claims()
			tok, err := h.gh.SignWith(other, "ES256", h.gh.KeyID(), c)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"an unknown kid", func() string {
			tok, err := h.gh.SignWith(other, "ES256", "no-such-kid", claims())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"an expired token", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) {
				now := time.Now().Unix()
				c["iat"], c["nbf"], c["exp"] = now-900, now-900, now-120
			})
		}},
		{"nbf in the future", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() })
		}},
		{"a trailing slash on iss", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["iss"] = h.gh.URL() + "/" })
		}},
		{"iss in another case", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["iss"] = strings.ToUpper(h.gh.URL()) })
		}},
		{"no aud", func() string { return h.sign(h.gh, "github-push-main", func(c map[string]any) { delete(c, "aud") }) }},
		{"the wrong aud", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["aud"] = "sts.amazonaws.com" })
		}},
		{"issuer A's claims signed with issuer B's key", func() string {
			tok, err := h.gl.SignWith(h.gl.Key(), "RS256", h.gl.KeyID(), withIss(claims(), h.gh.URL()))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"repository as a number", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["repository"] = 42 })
		}},
		{"repository as a list", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["repository"] = []string{"acme/app"} })
		}},
		{"an oversized token", func() string {
			return h.sign(h.gh, "github-push-main", func(c map[string]any) { c["padding"] = strings.Repeat("x", 20<<10) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.exchange("artifacts", tt.token(), nil)
			wantError(t, r, 401, "invalid_token")
		})
	}
	for _, rec := range h.auditRecords() {
		if rec.Decision != audit.Deny || rec.Credential != nil {
			t.Errorf("an attack was not denied or left a credential: %+v", rec)
		}
	}
	if got, want := len(h.auditRecords()), len(tests); got != want {
		t.Errorf("%d audit records for %d attacks", got, want)
	}
}

func TestReplayedTokenIsRefusedPerPolicy(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	r := h.exchange("artifacts", tok, nil)
	wantError(t, r, 401, "invalid_token")
	if !strings.Contains(r.str("error_description"), "already used") {
		t.Errorf("description %q", r.str("error_description"))
	}
	// A Ferry token is signed before its jti is claimed (grant.Local); the
	// one signed for the replay was dropped, and its refusal names none.
	recs := h.auditRecords()
	if last := recs[len(recs)-1]; last.Decision != audit.Deny || last.Credential != nil {
		t.Errorf("the replay's audit record = %s with credential %+v, want a deny naming no credential", last.Decision, last.Credential)
	}
	// Single use is per policy: the same job may reach a second policy.
	if r := h.exchange("scoped", tok, nil); r.status != 200 {
		t.Fatalf("other policy: %d %s", r.status, r.raw)
	}
}

func TestRefusedAttemptDoesNotBurnTheToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	wantError(t, h.exchange("artifacts", tok, map[string]any{"duration": "2h"}), 400, "invalid_request")
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Fatalf("after a refused attempt: %d %s", r.status, r.raw)
	}
}

func TestTokenGrantVerifiesWithGoOIDCAgainstTheBroker(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r := h.exchange("artifacts", h.sign(h.gh, "github-push-main", nil), map[string]any{"duration": "5m"})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("a credential response may be cached: Cache-Control %q", r.header.Get("Cache-Control"))
	}
	tok := r.obj("token")["token"].(string)
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &oidc.Config{ClientID: "https://artifacts.internal.example"}
	idt, err := provider.Verifier(cfg).Verify(ctx, tok)
	if err != nil {
		t.Fatalf("a relying party cannot verify Ferry's token: %v", err)
	}
	if idt.Subject != "repo:acme/app:ref:refs/heads/main" {
		t.Errorf("sub = %q", idt.Subject)
	}
	var c map[string]any
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c["repository"] != "acme/app" || c["sha"] != "9f2c4d1e5b7a8c3f0e1d2c3b4a5f6e7d8c9b0a1f" {
		t.Errorf("copied claims = %v", c)
	}
	if lifetime := idt.Expiry.Sub(idt.IssuedAt); lifetime != 5*time.Minute {
		t.Errorf("lifetime = %s, want the 5m asked for", lifetime)
	}
	// After expiry the same token is refused.
	cfg.Now = func() time.Time { return idt.Expiry.Add(time.Minute) }
	if _, err := provider.Verifier(cfg).Verify(ctx, tok); err == nil {
		t.Error("an expired Ferry token still verifies")
	}
	// Wrong audience is refused too.
	if _, err := provider.Verifier(&oidc.Config{ClientID: "https://other.example"}).Verify(ctx, tok); err == nil {
		t.Error("Ferry's token verifies for another audience")
	}
}

func TestGitLabTokensAreAuthorized(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r := h.exchange("gitlab-deploy", h.sign(h.gl, "gitlab-protected-deploy", nil), nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	recs := h.auditRecords()
	last := recs[len(recs)-1]
	if last.Claim("project_path") != "group/app" || last.Claim("pipeline_id") != "998877" || last.Claim("job_id") != "5566778" || last.Issuer != "gitlab" {
		t.Errorf("audit record lacks GitLab identity: %+v", last)
	}
}

func TestGCPGrantRoundTripsThroughTheIAMCredentialsClient(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r := h.exchange("gcp-deploy", h.sign(h.gh, "github-push-main", nil), map[string]any{"duration": "5m"})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	g := r.obj("gcp")
	if g["access_token"] != "ya29.fake-deploy@acme-prod.iam.gserviceaccount.com" || g["service_account"] != "deploy@acme-prod.iam.gserviceaccount.com" {
		t.Errorf("gcp = %v", g)
	}
	reqs := h.gcp.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests reached Google", len(reqs))
	}
	got := reqs[0]
	if got.GetName() != "projects/-/serviceAccounts/deploy@acme-prod.iam.gserviceaccount.com" ||
		got.GetLifetime().AsDuration() != 5*time.Minute ||
		len(got.GetScope()) != 1 || got.GetScope()[0] != "https://www.googleapis.com/auth/cloud-platform" {
		t.Errorf("request sent to Google = %v", got)
	}
}

func TestGoogleFailuresBecomeUpstreamErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler gcpfake.Handler
		desc    string
	}{
		{"permission denied", func(context.Context, *credentialspbRequest) (*credentialspbResponse, error) {
			return nil, gcpfake.Error(codes.PermissionDenied, "IAM_PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied")
		}, "IAM_PERMISSION_DENIED"},
		{"not found", func(context.Context, *credentialspbRequest) (*credentialspbResponse, error) {
			return nil, gcpfake.Error(codes.NotFound, "", "Service account does not exist")
		}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{gcpHandler: tt.handler})
			tok := h.sign(h.gh, "github-push-main", nil)
			r := h.exchange("gcp-deploy", tok, nil)
			wantError(t, r, 502, "upstream_error")
			if !strings.Contains(r.str("error_description"), tt.desc) {
				t.Errorf("description %q lacks Google's reason %q", r.str("error_description"), tt.desc)
			}
			// No credential was issued, so the token is not spent.
			if r2 := h.exchange("gcp-deploy", tok, nil); r2.status != 502 {
				t.Errorf("retry with the same token: %d, want the upstream error again, not a replay refusal", r2.status)
			}
		})
	}
}

func TestSlowGoogleBecomesUpstreamError(t *testing.T) {
	slow := func(ctx context.Context, _ *credentialspbRequest) (*credentialspbResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	// The service's own mint timeout must end the call; a short one keeps
	// the test quick.
	h := newHarness(t, harnessOpts{gcpHandler: slow, mintTimeout: 200 * time.Millisecond})
	r := h.exchange("gcp-deploy", h.sign(h.gh, "github-push-main", nil), nil)
	wantError(t, r, 502, "upstream_error")
	if !strings.Contains(r.str("error_description"), "did not answer in time") {
		t.Errorf("description %q", r.str("error_description"))
	}
}

func TestTemplatesRefuseHostileClaimValues(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, repo := range []string{
		`acme/a*`,
		`acme/a"b`,
		`acme/x"}],"Effect":"Allow`,
		"acme/line\nbreak",
		`acme/../other`,
		`acme/` + strings.Repeat("a", 300),
	} {
		t.Run(repo[:min(len(repo), 20)], func(t *testing.T) {
			r := h.exchange("scoped", h.sign(h.gh, "github-push-main", func(c map[string]any) { c["repository"] = repo }), nil)
			wantError(t, r, 403, "access_denied")
			if !strings.Contains(r.str("error_description"), `claim "repository"`) {
				t.Errorf("description %q does not name the claim", r.str("error_description"))
			}
		})
	}
	r := h.exchange("scoped", h.sign(h.gh, "github-push-main", nil), nil)
	if r.status != 200 {
		t.Fatalf("a benign repository: %d %s", r.status, r.raw)
	}
	c := jwtClaims(t, r.obj("token")["token"].(string))
	if c["prefix"] != "artifacts/acme/app/" {
		t.Errorf("rendered claim prefix = %v", c["prefix"])
	}
}

func TestBearerHeaderCarriesTheToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	r := h.post("/v1/exchange", "application/json", strings.NewReader(`{"policy":"artifacts"}`), map[string]string{"Authorization": "Bearer " + tok})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	other := h.sign(h.gh, "github-push-main", nil)
	body, _ := json.Marshal(map[string]string{"policy": "artifacts", "token": other})
	r = h.post("/v1/exchange", "application/json", bytes.NewReader(body), map[string]string{"Authorization": "Bearer " + tok})
	wantError(t, r, 400, "invalid_request")
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	h := newHarness(t, harnessOpts{rate: 1, burst: 2})
	var last response
	for i := 0; i < 3; i++ {
		last = h.exchange("nope", "x", nil)
	}
	wantError(t, last, 429, "rate_limited")
	if last.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

func TestForwardedForCountsOnlyFromTrustedProxies(t *testing.T) {
	forwarded := func(h *harness, client string) response {
		tok := h.sign(h.gh, "github-push-main", nil)
		body := strings.NewReader(`{"policy":"artifacts","token":"` + tok + `"}`)
		return h.post("/v1/exchange", "application/json", body, map[string]string{"X-Forwarded-For": client})
	}

	direct := newHarness(t, harnessOpts{rate: 1, burst: 1})
	if r := forwarded(direct, "203.0.113.9"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	// Without trusted proxies the header is the caller's word: it neither
	// names the audited address nor buys a fresh rate-limit bucket.
	wantError(t, forwarded(direct, "203.0.113.10"), 429, "rate_limited")
	if recs := direct.auditRecords(); len(recs) != 1 || recs[0].ClientIP != "127.0.0.1" {
		t.Errorf("audit = %+v, want the peer's own address", recs)
	}

	proxied := newHarness(t, harnessOpts{rate: 1, burst: 1, trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, client := range []string{"203.0.113.9", "203.0.113.10", "198.51.100.1, 203.0.113.11"} {
		if r := forwarded(proxied, client); r.status != 200 {
			t.Fatalf("client %s behind the trusted proxy: %d %s", client, r.status, r.raw)
		}
	}
	wantError(t, forwarded(proxied, "203.0.113.9"), 429, "rate_limited")
	var ips []string
	for _, r := range proxied.auditRecords() {
		ips = append(ips, r.ClientIP)
	}
	// The right-most untrusted hop is the client: what it wrote to the left
	// of itself (198.51.100.1) is its own claim.
	if want := []string{"203.0.113.9", "203.0.113.10", "203.0.113.11"}; strings.Join(ips, " ") != strings.Join(want, " ") {
		t.Errorf("audited client addresses = %v, want %v", ips, want)
	}
}

func TestIssuerDownWithNoKeysIs503(t *testing.T) {
	var skew atomic.Int64
	h := newHarness(t, harnessOpts{now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	// Fetches are rate-limited per issuer, so a recovery is seen once the
	// Retry-After has passed.
	later := func() { skew.Add(int64(identity.DefaultMinRefresh + time.Second)) }
	tok := h.sign(h.gh, "github-push-main", nil)
	h.gh.SetDown(true)
	h.gl.SetDown(true)
	r := h.exchange("artifacts", tok, nil)
	wantError(t, r, 503, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if ready := h.get("/readyz"); ready.status != 503 {
		t.Errorf("/readyz = %d while every issuer is down", ready.status)
	}

	// GitLab's keys verify again: the replica goes back into service,
	// degraded, while GitHub's jobs still get 503.
	h.gl.SetDown(false)
	later()
	if ready := h.get("/readyz"); ready.status != 200 || ready.str("status") != "degraded" || !strings.Contains(ready.raw, "github") {
		t.Errorf("/readyz with one issuer down = %d %s, want 200 degraded naming github", ready.status, ready.raw)
	}
	wantError(t, h.exchange("artifacts", tok, nil), 503, "unavailable")

	h.gh.SetDown(false)
	later()
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Errorf("after the issuer recovers: %d %s", r.status, r.raw)
	}
	if ready := h.get("/readyz"); ready.status != 200 || ready.str("status") != "ready" {
		t.Errorf("/readyz = %d %s once keys are cached", ready.status, ready.raw)
	}
}

func TestEveryDecisionIsAuditedWithoutSecrets(t *testing.T) {
	h := newHarness(t, harnessOpts{aws: true})
	var secrets []string
	allowed := map[string]string{
		"deploy-prod": h.sign(h.gh, "github-environment-production", nil),
		"artifacts":   h.sign(h.gh, "github-push-main", nil),
		"gcp-deploy":  h.sign(h.gh, "github-push-main", nil),
	}
	for policy, tok := range allowed {
		secrets = append(secrets, tok)
		r := h.exchange(policy, tok, nil)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", policy, r.status, r.raw)
		}
		switch {
		case r.obj("aws") != nil:
			a := r.obj("aws")
			secrets = append(secrets, a["secret_access_key"].(string), a["session_token"].(string))
			if a["role_arn"] != "arn:aws:iam::123456789012:role/deploy-prod" || a["access_key_id"] == "" {
				t.Errorf("aws = %v", a)
			}
		case r.obj("gcp") != nil:
			secrets = append(secrets, r.obj("gcp")["access_token"].(string))
		case r.obj("token") != nil:
			secrets = append(secrets, r.obj("token")["token"].(string))
		}
	}
	denied := h.sign(h.gh, "github-push-main", func(c map[string]any) { c["ref"] = "refs/heads/dev" })
	secrets = append(secrets, denied)
	wantError(t, h.exchange("artifacts", denied, nil), 403, "access_denied")
	wantError(t, h.exchange("artifacts", "garbage."+denied, nil), 401, "invalid_token")

	recs := h.auditRecords()
	if len(recs) != 5 {
		t.Fatalf("%d audit records for 5 decisions", len(recs))
	}
	allows := 0
	for _, r := range recs {
		if r.RequestID == "" || r.Time.IsZero() || r.Hash == "" {
			t.Errorf("incomplete record %+v", r)
		}
		if r.Decision == audit.Allow {
			allows++
			if r.Credential == nil || r.Credential.ID == "" || r.Credential.ExpiresAt.IsZero() {
				t.Errorf("allow without a credential id: %+v", r)
			}
			if r.Claim("repository") != "acme/app" || r.Claim("run_id") != "11223344556" || r.Subject == "" {
				t.Errorf("allow without the identity: %+v", r)
			}
		}
	}
	if allows != 3 {
		t.Errorf("%d allows recorded, want 3", allows)
	}
	file := readFile(t, h.auditPath)
	// A consumer with a fixed schema finds the contract's keys on every
	// line, allow or deny.
	for i, line := range strings.Split(strings.TrimSpace(file), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		for _, key := range []string{"time", "request_id", "decision", "error", "reason", "policy", "issuer", "subject", "credential", "client_ip", "prev", "hash"} {
			if _, ok := m[key]; !ok {
				t.Errorf("line %d (%s) lacks %q", i+1, m["decision"], key)
			}
		}
	}
	logs := h.logs.String()
	for _, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("suspiciously short secret %q", s)
		}
		if strings.Contains(file, s) {
			t.Errorf("a secret reached the audit log: %.12s…", s)
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret reached the server log: %.12s…", s)
		}
		// A JWT's signature alone is a secret too.
		if parts := strings.Split(s, "."); len(parts) == 3 && (strings.Contains(file, parts[2]) || strings.Contains(logs, parts[2])) {
			t.Errorf("a token signature was logged")
		}
	}
}

func TestARefusedBodyIsAuditedUnderThePolicyItNamed(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	r := h.post("/v1/exchange", "application/json", strings.NewReader(`{"policy":"artifacts","token":"`+tok+`","duration":"forever"}`), nil)
	wantError(t, r, 400, "invalid_request")
	bad := h.post("/v1/exchange", "application/json", strings.NewReader(`[]`), nil)
	wantError(t, bad, 400, "invalid_request")
	if d := bad.str("error_description"); strings.Contains(d, "exchange.") || !strings.Contains(d, "JSON object") {
		t.Errorf("description %q should ask for a JSON object without naming Go types", d)
	}
	recs := h.auditRecords()
	if len(recs) != 2 || recs[0].Policy != "artifacts" || recs[0].Decision != audit.Deny || recs[1].Policy != "" {
		t.Fatalf("audit records = %+v, want the first under policy artifacts", recs)
	}
	if strings.Contains(readFile(t, h.auditPath), tok) {
		t.Error("the refused body's token reached the audit log")
	}
}

func TestUpstreamFailureIs502AndReleasesTheToken(t *testing.T) {
	failing := &flakyAWS{}
	h := newHarness(t, harnessOpts{awsMinter: failing})
	tok := h.sign(h.gh, "github-environment-production", nil)
	r := h.exchange("deploy-prod", tok, nil)
	wantError(t, r, 502, "upstream_error")
	if !strings.Contains(r.str("error_description"), "AccessDenied") {
		t.Errorf("description %q lacks STS's message", r.str("error_description"))
	}
	failing.ok = true
	if r := h.exchange("deploy-prod", tok, nil); r.status != 200 {
		t.Fatalf("retry after an upstream failure: %d %s", r.status, r.raw)
	}
	got := failing.last
	if got.SessionName != "acme/app@11223344556" || got.SourceIdentity != "acme/app" {
		t.Errorf("session name %q, source identity %q", got.SessionName, got.SourceIdentity)
	}
	if !strings.Contains(got.SessionPolicy, `"arn:aws:s3:::artifacts/acme/app/*"`) {
		t.Errorf("session policy not rendered: %s", got.SessionPolicy)
	}
	if len(got.Tags) != 3 || got.Tags[0].Key != "repository" || got.Tags[2].Value != "11223344556" {
		t.Errorf("tags = %+v", got.Tags)
	}
	if got.Duration != time.Hour {
		t.Errorf("duration = %s, want the policy's 1h", got.Duration)
	}
}

func TestAnUnrecordedGrantIsWithheldAndDoesNotBurnTheToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	h.auditBroken.Store(true)
	r := h.exchange("artifacts", tok, nil)
	wantError(t, r, 503, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if strings.Contains(r.raw, "eyJ") {
		t.Errorf("the withheld answer carries a token: %s", r.raw)
	}
	h.auditBroken.Store(false)
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Fatalf("retry once the log recovers: %d %s", r.status, r.raw)
	}
	recs := h.auditRecords()
	if len(recs) != 1 || recs[0].Decision != audit.Allow {
		t.Fatalf("audit log = %+v, want only the recorded allow", recs)
	}
}

func TestAWithheldGrantIsEndedWhereItsKindCan(t *testing.T) {
	records := replay.NewMemory()
	h := newHarness(t, harnessOpts{records: records})
	h.auditBroken.Store(true)
	wantError(t, h.exchange("artifacts", h.sign(h.gh, "github-push-main", nil), nil), 503, "unavailable")
	// The grant's release record is forgotten, and the minted token, which
	// nobody saw, is on the revocation list: that is the one record left.
	if n := records.RecordLen(); n != 1 {
		t.Fatalf("%d records after a withheld grant, want 1 (the revoked token id)", n)
	}
	if strings.Contains(h.logs.String(), "could not end a credential") {
		t.Errorf("ending the withheld token failed:\n%s", h.logs.String())
	}
}

func TestMetricsCountDecisions(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.exchange("artifacts", h.sign(h.gh, "github-push-main", nil), nil)
	h.exchange("no-such-policy-"+strings.Repeat("x", 10), "x", nil)
	m := h.get("/metrics")
	if m.status != 200 {
		t.Fatalf("/metrics = %d", m.status)
	}
	for _, want := range []string{
		`ferry_exchanges_total{decision="allow",error="",policy="artifacts"} 1`,
		`ferry_exchanges_total{decision="deny",error="invalid_token",policy="unknown"} 1`,
	} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m.raw, "no-such-policy") {
		t.Error("a caller-chosen policy name became a metric label")
	}
}

func TestHealthAndDiscoveryEndpoints(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if r := h.get("/healthz"); r.status != 200 {
		t.Errorf("/healthz = %d", r.status)
	}
	d := h.get("/.well-known/openid-configuration")
	if d.status != 200 || d.str("issuer") != h.srv.URL || d.str("jwks_uri") != h.srv.URL+"/.well-known/jwks.json" {
		t.Errorf("discovery = %d %s", d.status, d.raw)
	}
	j := h.get("/.well-known/jwks.json")
	if j.status != 200 || !strings.Contains(j.raw, `"kty":"EC"`) || strings.Contains(j.raw, `"d":`) {
		t.Errorf("jwks = %d %s", j.status, j.raw)
	}
}

func TestWrongPathsAndMethodsAnswerInTheContractsShape(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/exchange", 405, "method_not_allowed"},
		{"PUT", "/v1/exchange", 405, "method_not_allowed"},
		{"GET", "/v1/token", 405, "invalid_request"},
		{"POST", "/v1/nope", 404, "not_found"},
		{"DELETE", "/healthz", 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, h.srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := h.do(req)
			if r.status != tt.status || r.str("error") != tt.code || r.str("request_id") == "" {
				t.Errorf("got %d %s, want %d %s", r.status, r.raw, tt.status, tt.code)
			}
		})
	}
	head, err := http.NewRequest(http.MethodHead, h.srv.URL+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(head)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /healthz = %d, want 200 for probes that use HEAD", resp.StatusCode)
	}
}

func TestRFC8693TokenExchange(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	form := func(policy, tok string) url.Values {
		return url.Values{
			"grant_type":         {exchange.GrantTypeTokenExchange},
			"subject_token":      {tok},
			"subject_token_type": {exchange.TokenTypeIDToken},
			"audience":           {policy},
		}
	}
	r := h.tokenExchange(form("artifacts", h.sign(h.gh, "github-push-main", nil)))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r.str("token_type") != "Bearer" || r.str("issued_token_type") != exchange.TokenTypeJWT || r.str("access_token") == "" {
		t.Errorf("response = %s", r.raw)
	}
	if exp, _ := r.body["expires_in"].(float64); exp < 590 || exp > 600 {
		t.Errorf("expires_in = %v, want about 600", r.body["expires_in"])
	}
	asked := form("artifacts", h.sign(h.gh, "github-push-main", nil))
	asked.Set("requested_token_type", exchange.TokenTypeJWT)
	if r := h.tokenExchange(asked); r.status != 200 || r.str("issued_token_type") != exchange.TokenTypeJWT {
		t.Errorf("a JWT asked of a token policy: %d %s", r.status, r.raw)
	}
	g := h.tokenExchange(form("gcp-deploy", h.sign(h.gh, "github-push-main", nil)))
	if g.status != 200 || g.str("issued_token_type") != exchange.TokenTypeAccessToken {
		t.Errorf("gcp via RFC 8693: %d %s", g.status, g.raw)
	}

	bad := func(edit func(url.Values)) url.Values {
		f := form("artifacts", h.sign(h.gh, "github-push-main", nil))
		edit(f)
		return f
	}
	tests := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"another grant type", bad(func(f url.Values) { f.Set("grant_type", "client_credentials") }), 400, "unsupported_grant_type"},
		{"no subject token", bad(func(f url.Values) { f.Del("subject_token") }), 400, "invalid_request"},
		{"an access token as subject", bad(func(f url.Values) { f.Set("subject_token_type", exchange.TokenTypeAccessToken) }), 400, "invalid_request"},
		{"a repeated parameter", bad(func(f url.Values) { f.Add("subject_token_type", exchange.TokenTypeJWT) }), 400, "invalid_request"},
		// RFC 8693 §2.2.2: a token for several audiences is invalid_target.
		{"a repeated audience", bad(func(f url.Values) { f.Add("audience", "other") }), 400, "invalid_target"},
		{"an unknown policy", bad(func(f url.Values) { f.Set("audience", "nope") }), 400, "invalid_target"},
		{"an aws policy", form("deploy-prod", h.sign(h.gh, "github-environment-production", nil)), 400, "invalid_target"},
		{"a JWT asked of a gcp policy", func() url.Values {
			f := form("gcp-deploy", h.sign(h.gh, "github-push-main", nil))
			f.Set("requested_token_type", exchange.TokenTypeJWT)
			return f
		}(), 400, "invalid_request"},
		{"an access token asked of a token policy", bad(func(f url.Values) { f.Set("requested_token_type", exchange.TokenTypeAccessToken) }), 400, "invalid_request"},
		{"an aws policy the claims do not satisfy", form("deploy-prod", h.sign(h.gh, "github-push-main", nil)), 400, "invalid_target"},
		{"a forged token", bad(func(f url.Values) { f.Set("subject_token", "x.y.z") }), 400, "invalid_grant"},
		{"claims that fail the policy", form("artifacts", h.sign(h.gh, "github-push-main", func(c map[string]any) { c["ref"] = "refs/heads/x" })), 400, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.tokenExchange(tt.form)
			if r.status != tt.status || r.str("error") != tt.code || r.str("error_description") == "" {
				t.Errorf("got %d %s, want %d %s: %s", r.status, r.str("error"), tt.status, tt.code, r.raw)
			}
		})
	}
	if r := h.tokenExchange(form("deploy-prod", h.sign(h.gh, "github-environment-production", nil))); !strings.Contains(r.str("error_description"), "/v1/exchange") {
		t.Errorf("an aws policy's refusal does not point at /v1/exchange: %s", r.raw)
	}
	wrongType := h.post("/v1/token", "application/json", strings.NewReader(`{}`), nil)
	if wrongType.status != 400 || wrongType.str("error") != "invalid_request" {
		t.Errorf("JSON body: %d %s", wrongType.status, wrongType.raw)
	}
}
