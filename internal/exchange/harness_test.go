package exchange_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/policystore"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/replay"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
	"github.com/ferry-broker/ferry/internal/trust"
)

// The policies every exchange test runs against: written here, not taken
// from trustpolicies/, so an edit to the examples cannot silently change
// what these tests prove.
var testPolicies = map[string]string{
	"deploy-prod.yaml": `
description: Deploy acme/app to production from main
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
  environment: production
  event_name: [push, workflow_dispatch]
deny:
  - event_name: pull_request_target
  - actor: "*[bot]"
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/deploy-prod
    duration: 1h
    session_policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: s3:PutObject
          Resource: "arn:aws:s3:::artifacts/{{repository}}/*"
    session_tags: [repository, ref, run_id]
`,
	"artifacts.yaml": `
issuer: github
match:
  repository: "acme/*"
  ref: refs/heads/main
grant:
  token:
    audience: https://artifacts.internal.example
    duration: 10m
    claims: [repository, ref, sha]
`,
	"scoped.yaml": `
description: Any acme repository gets a token scoped to its own bucket path
issuer: github
match:
  repository: {regex: "acme/.+"}
grant:
  token:
    audience: https://storage.internal.example
    duration: 5m
    extra_claims:
      prefix: "artifacts/{{repository}}/"
`,
	"gcp-deploy.yaml": `
issuer: github
match:
  repository_id: "892345671"
  ref: refs/heads/main
grant:
  gcp:
    service_account: deploy@acme-prod.iam.gserviceaccount.com
    scopes: [https://www.googleapis.com/auth/cloud-platform]
    duration: 10m
`,
	"gitlab-deploy.yaml": `
issuer: gitlab
match:
  project_path: group/app
  ref: main
  ref_protected: true
  environment_protected: "true"
  pipeline_source: [push, web]
grant:
  token:
    audience: https://deploy.internal.example
    duration: 5m
    claims: [project_path, ref, environment]
`,
}

// loadOptions are the broker's: both test issuers, every kind and platform.
var loadOptions = trust.LoadOptions{Issuers: []string{"github", "gitlab"}, Kinds: registry.Kinds(), Platforms: registry.Platforms()}

// harness is one broker over real loopback HTTP with a real issuer, real
// policies on disk, a real audit file and real minters.
type harness struct {
	t         *testing.T
	gh, gl    *devissuer.Issuer
	srv       *httptest.Server
	auditPath string
	logs      *syncBuffer
	gcp       *gcpfake.Server
	moto      *moto.Server
	service   *exchange.Service
	// auditBroken makes every audit write fail, as a full disk would.
	auditBroken atomic.Bool
}

// breakableAudit is the real audit log with a switch that makes writes fail.
type breakableAudit struct {
	log    *audit.Log
	broken *atomic.Bool
}

func (b breakableAudit) Write(ctx context.Context, r audit.Record) (audit.Record, error) {
	if b.broken.Load() {
		return audit.Record{}, errors.New("write audit.log: no space left on device")
	}
	return b.log.Write(ctx, r)
}

type harnessOpts struct {
	aws            bool           // start moto_server and mint AWS credentials from it
	awsMinter      awssts.Assumer // overrides aws
	gcpHandler     gcpfake.Handler
	rate           float64
	trustedProxies []netip.Prefix
	burst          int
	maxClients     int
	limits         exchange.Limits
	mintTimeout    time.Duration
	// now is the verifier's clock; nil is the real one.
	now func() time.Time
	// replay is the replay store; nil is a default memory store.
	replay replay.Store
	// records keep release state; nil: the replay store's own.
	records replay.Records
	// awsEndpoint, when set, is the STS endpoint (URL) of a real SDK
	// client with dummy credentials; gcpEndpoint (host:port) that of the
	// IAM Credentials client in place of gcpfake.
	awsEndpoint, gcpEndpoint string
}

// serviceParts are what both harnesses build a Service from: a verifier
// for the two test issuers, testPolicies in a policy store, an audit log
// file, and a debug logger writing to the harness's logs.
type serviceParts struct {
	logger    *slog.Logger
	pool      *identity.Pool
	policies  *policystore.Store
	auditLog  *audit.Log
	auditPath string
}

// newServiceParts makes them; now, when set, is the verifier's clock.
func newServiceParts(t *testing.T, logs io.Writer, gh, gl *devissuer.Issuer, now func() time.Time) serviceParts {
	t.Helper()
	dir := t.TempDir()
	policyDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range testPolicies {
		if err := os.WriteFile(filepath.Join(policyDir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := serviceParts{logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	var err error
	p.pool, err = identity.NewPool([]identity.IssuerConfig{
		{Name: "github", IssuerURL: gh.URL(), Audiences: []string{"ferry"}},
		{Name: "gitlab", IssuerURL: gl.URL(), Audiences: []string{"ferry"}},
	}, identity.Options{Logger: p.logger, Now: now, Claims: registry.Platforms()})
	if err != nil {
		t.Fatal(err)
	}
	if p.policies, err = policystore.Open(policyDir, loadOptions, p.logger); err != nil {
		t.Fatal(err)
	}
	p.auditPath = filepath.Join(dir, "audit.log")
	if p.auditLog, err = audit.Open(p.auditPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.auditLog.Close() })
	return p
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}}
	h.gh, h.gl = issuers.Start(t)

	parts := newServiceParts(t, h.logs, h.gh, h.gl, o.now)
	logger, pool, store, auditLog := parts.logger, parts.pool, parts.policies, parts.auditLog
	h.auditPath = parts.auditPath

	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	signer, err := tokensign.NewSigner("http://"+srv.Listener.Addr().String(), key)
	if err != nil {
		t.Fatal(err)
	}

	if o.replay == nil {
		o.replay = replay.NewMemory()
	}
	deps := exchange.Deps{
		Verifier: pool, Policies: store, Replay: o.replay, Records: o.records, Audit: breakableAudit{auditLog, &h.auditBroken},
		Kinds: registry.Kinds(), Platforms: registry.Platforms(),
		Minters: map[string]grant.Minter{tokensign.KindName: signer},
		Logger:  logger, Metrics: exchange.NewMetrics(store.Known),
		MintTimeout: o.mintTimeout, Limits: o.limits,
	}
	switch {
	case o.awsMinter != nil:
		deps.Minters[awssts.KindName] = awssts.GrantMinter{STS: o.awsMinter}
	case o.aws:
		h.moto = moto.Start(t)
		deps.Minters[awssts.KindName] = awssts.NewFromConfig(h.moto.AWSConfig())
	case o.awsEndpoint != "":
		deps.Minters[awssts.KindName] = awssts.NewFromConfig(aws.Config{
			Region:       moto.Region,
			BaseEndpoint: aws.String(o.awsEndpoint),
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: moto.AccessKeyID, SecretAccessKey: moto.SecretAccessKey}, nil
			}),
		})
	}
	h.gcp = gcpfake.Start(t, o.gcpHandler)
	gcpOpts := h.gcp.ClientOptions()
	if o.gcpEndpoint != "" {
		gcpOpts = []option.ClientOption{
			option.WithEndpoint(o.gcpEndpoint),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		}
	}
	gm, err := gcpiam.New(context.Background(), gcpOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gm.Close() })
	deps.Minters[gcpiam.KindName] = gm

	if h.service, err = exchange.New(deps); err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = exchange.NewHandler(h.service, exchange.HTTPOptions{
		Logger: logger, Metrics: deps.Metrics, Discovery: signer,
		Ready:         pool.Readiness,
		RatePerSecond: o.rate, RateBurst: o.burst, RateMaxClients: o.maxClients, TrustedProxies: o.trustedProxies,
	})
	srv.Start()
	t.Cleanup(srv.Close)
	h.srv = srv
	return h
}

// sign returns a token from the named sample payload, edited.
func (h *harness) sign(is *devissuer.Issuer, sample string, edit func(map[string]any)) string {
	h.t.Helper()
	return issuers.Sign(h.t, is, sample, edit)
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

func (r response) obj(key string) map[string]any {
	m, _ := r.body[key].(map[string]any)
	return m
}

func (h *harness) post(path, contentType string, body io.Reader, header map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return h.do(req)
}

func (h *harness) do(req *http.Request) response {
	h.t.Helper()
	return send(h.t, h.srv, req)
}

// send makes req to srv and reads the answer, decoding a JSON body.
func send(t *testing.T, srv *httptest.Server, req *http.Request) response {
	t.Helper()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("response is not JSON: %v\n%s", err, raw)
		}
	}
	return r
}

func (h *harness) exchange(policy, token string, extra map[string]any) response {
	h.t.Helper()
	body := map[string]any{"policy": policy, "token": token}
	for k, v := range extra {
		body[k] = v
	}
	data, err := json.Marshal(body)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.post("/v1/exchange", "application/json", bytes.NewReader(data), nil)
}

func (h *harness) tokenExchange(form url.Values) response {
	h.t.Helper()
	return h.post("/v1/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), nil)
}

// auditRecords reads the audit file and checks its chain.
func (h *harness) auditRecords() []audit.Record {
	h.t.Helper()
	data, err := os.ReadFile(h.auditPath)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := audit.Verify(bytes.NewReader(data)); err != nil {
		h.t.Fatalf("audit chain broken: %v", err)
	}
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// wantError checks the contract's error shape.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d %s\n%s", r.status, r.str("error"), status, code, r.raw)
	}
	if r.str("error_description") == "" || r.str("request_id") == "" {
		t.Errorf("error response lacks error_description or request_id: %s", r.raw)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (h *harness) get(path string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(req)
}
