// Package actions_test runs the pipeline-side integrations in actions/ the
// way the CI platforms run them, against a real broker: the GitHub Action's
// committed dist/index.js under node with the runner's environment, and the
// GitLab template's script under bash and dash with the job's environment.
// The broker is the real `ferry serve` binary minting AWS credentials from a
// real moto STS and Ferry-signed tokens with a real key; CI tokens come from
// the project's dev OIDC issuer.
package actions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

// The test policies, written per broker so these tests do not move when the
// example policies in trustpolicies/ are edited.
const testPolicies = `
-- gh-deploy.yaml --
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
  environment: production
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/ferry-action-deploy
    duration: 1h
-- gh-deploy-15m.yaml --
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  environment: production
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/ferry-action-deploy
    duration: 15m
-- gh-deploy-stage.yaml --
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  environment: production
grant:
  aws:
    role_arn: arn:aws:iam::210987654321:role/ferry-action-stage
    duration: 1h
-- gh-artifacts.yaml --
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
grant:
  token:
    audience: https://artifacts.internal.example
    duration: 5m
    claims: [repository, ref]
-- gh-gcp.yaml --
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  environment: production
grant:
  gcp:
    service_account: deploy@acme-prod.iam.gserviceaccount.com
    duration: 10m
    scopes: [https://www.googleapis.com/auth/cloud-platform]
-- gh-checkout.yaml --
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
grant:
  github:
    permissions: {contents: read}
-- gl-github.yaml --
issuer: gitlab
match:
  project_path: group/app
  project_id: 4242
grant:
  github:
    owner: acme
    repositories: [app]
    permissions: {contents: read}
-- gl-deploy.yaml --
issuer: gitlab
match:
  project_path: group/app
  project_id: 4242
  ref: main
  ref_protected: true
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/ferry-gitlab-deploy
    duration: 30m
-- gl-deploy-stage.yaml --
issuer: gitlab
match:
  project_path: group/app
  project_id: 4242
  ref_protected: true
grant:
  aws:
    role_arn: arn:aws:iam::210987654321:role/ferry-gitlab-stage
    duration: 1h
-- gl-artifacts.yaml --
issuer: gitlab
match:
  project_path: group/app
  project_id: 4242
grant:
  token:
    audience: https://artifacts.internal.example
    duration: 5m
    claims: [project_path, ref]
`

// requireTool finds a program the test drives. Like moto.Start, it skips
// locally but fails when CI=true: a CI run must not go green by skipping
// the tests of what it ships.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not on PATH (CI=true, so this is a failure): %v", name, err)
		}
		t.Skipf("%s is not on PATH: %v", name, err)
	}
	return p
}

// repoRoot is the module root, found from this file's directory so the
// tests run from any working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Dir(filepath.Dir(file))
}

// env is everything a broker test needs: the binary, the two CI issuers,
// a local STS and a running broker.
type env struct {
	ferry  string
	gh, gl *devissuer.Issuer
	sts    *moto.Server
	broker *ferryproc.Server
}

// ferryBin is the binary under test, built once for the package.
var ferryBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "ferry-actions-")
	if err != nil {
		return "", err
	}
	return ferryproc.Build(dir)
})

func newEnv(t *testing.T) *env {
	t.Helper()
	bin, err := ferryBin()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ferry: bin}
	e.gh, e.gl = issuers.Start(t)
	e.sts = moto.Start(t)
	e.broker = e.startBroker(t, "")
	return e
}

// brokerConfig is a ferry.yaml trusting both dev issuers, with the test
// policies and a fresh token signing key; extra is appended verbatim.
func (e *env) brokerConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	writePolicies(t, policies)
	return ferryproc.Config(t, policies, e.gh.URL(), e.gl.URL(), filepath.Join(dir, "audit.log")) + extra
}

func writePolicies(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(testPolicies, "-- ")
	for _, p := range parts[1:] {
		name, body, ok := strings.Cut(p, " --\n")
		if !ok {
			t.Fatalf("malformed test policy block %q", p)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startBroker runs the real binary on this env's issuers and STS.
func (e *env) startBroker(t *testing.T, extraConfig string) *ferryproc.Server {
	t.Helper()
	return ferryproc.Serve(t, e.ferry, e.brokerConfig(t, extraConfig), e.sts.Env())
}

// sign issues a CI token from one of devissuer's sample payloads, edited.
func sign(t *testing.T, is *devissuer.Issuer, sample string, edit func(map[string]any)) string {
	t.Helper()
	return issuers.Sign(t, is, sample, edit)
}

// awsCaller asks the local STS who the given credentials are, which proves
// they are live credentials moto minted rather than well-formed strings.
func awsCaller(t *testing.T, stsURL, keyID, secret, session string) string {
	t.Helper()
	cfg := aws.Config{
		Region:       moto.Region,
		BaseEndpoint: aws.String(stsURL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: session}, nil
		}),
		RetryMaxAttempts: 1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("sts GetCallerIdentity with the exported credentials: %v", err)
	}
	return aws.ToString(out.Arn)
}

// verifyFerryToken checks a Ferry-signed JWT against the broker's published
// JWKS and returns its claims.
func verifyFerryToken(t *testing.T, brokerURL, token string) map[string]any {
	t.Helper()
	resp, err := http.Get(brokerURL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatalf("fetch broker JWKS: %v", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("decode broker JWKS: %v", err)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("the token output is not a signed JWT: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("token has %d signatures", len(jws.Signatures))
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("the broker's JWKS has %d keys for the token's kid", len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("token does not verify against the broker's JWKS: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// expiresWithin fails unless an RFC 3339 time lies in (now, now+max+slack].
func expiresWithin(t *testing.T, what, value string, max time.Duration) {
	t.Helper()
	at, err := time.Parse(time.RFC3339, value)
	if err != nil {
		t.Fatalf("%s %q is not an RFC 3339 time: %v", what, value, err)
	}
	if until := time.Until(at); until <= 0 || until > max+time.Minute {
		t.Errorf("%s = %s: expires in %s, want within %s", what, value, until.Round(time.Second), max)
	}
}

// runnerTokenEndpoint plays the GitHub runner's OIDC token service: it
// answers ACTIONS_ID_TOKEN_REQUEST_URL, checks the request token, and signs
// a token for the asked audience from the sample payload the test chose.
type runnerTokenEndpoint struct {
	URL          string
	RequestToken string

	mu       sync.Mutex
	is       *devissuer.Issuer
	sample   string
	requests []tokenRequest
	issued   []string
}

type tokenRequest struct {
	Audience, Authorization, APIVersion string
}

func startRunnerTokenEndpoint(t *testing.T, is *devissuer.Issuer, sample string) *runnerTokenEndpoint {
	t.Helper()
	r := &runnerTokenEndpoint{RequestToken: "runner-request-" + rand.Text(), is: is, sample: sample}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	// The runner's URL already has a query; @actions/core appends
	// "&audience=…" to it.
	r.URL = srv.URL + "/idtoken/job?api-version=2.0"
	return r
}

func (r *runnerTokenEndpoint) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := req.URL.Query()
	r.requests = append(r.requests, tokenRequest{q.Get("audience"), req.Header.Get("Authorization"), q.Get("api-version")})
	if req.Header.Get("Authorization") != "Bearer "+r.RequestToken {
		http.Error(w, "bad request token", http.StatusUnauthorized)
		return
	}
	c, err := devissuer.SampleClaims(r.sample)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if aud := q.Get("audience"); aud != "" {
		c["aud"] = aud
	}
	tok, err := r.is.Sign(c)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.issued = append(r.issued, tok)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"count": len(tok), "value": tok})
}

func (r *runnerTokenEndpoint) snapshot() ([]tokenRequest, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tokenRequest(nil), r.requests...), append([]string(nil), r.issued...)
}

// parseFileCommands reads a GITHUB_ENV / GITHUB_OUTPUT file the way the
// runner does: NAME=VALUE lines, or NAME<<DELIMITER, value lines, DELIMITER.
func parseFileCommands(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	out := map[string]string{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var value []string
			closed := false
			for i++; i < len(lines); i++ {
				if lines[i] == delim {
					closed = true
					break
				}
				value = append(value, lines[i])
			}
			if !closed {
				return nil, fmt.Errorf("%s: %s<<…: delimiter never closes", filepath.Base(path), name)
			}
			out[name] = strings.Join(value, "\n")
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: line %d is neither NAME=VALUE nor NAME<<DELIMITER", filepath.Base(path), i+1)
		}
		out[name] = value
	}
	return out, nil
}

// redact hides secrets before output reaches a failure message: a failing
// test must not print the credentials it was checking. Whatever the output
// itself registered with ::add-mask:: is hidden too, as the runner would.
func redact(s string, secrets ...string) string {
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "::add-mask::"); ok {
			secrets = append(secrets, v)
		}
	}
	for _, sec := range secrets {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// result is one finished process.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func run(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", cmd.Path, err)
	}
	return r
}

// exhaustRateLimit spends the broker's per-address burst with a request
// that is refused before any token work, so the next request is answered
// 429 with Retry-After.
func exhaustRateLimit(t *testing.T, brokerURL string) {
	t.Helper()
	resp, err := http.Post(brokerURL+"/v1/exchange", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Post(brokerURL+"/v1/exchange", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the rate-limited broker answered %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
