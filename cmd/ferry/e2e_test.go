package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

// ferryBin is the binary under test, built once by TestMain.
var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ferryBin, err = ferryproc.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// `ferry exchange` leaves release files in the job's temp directory;
	// outside a CI job that is TMPDIR, which this package's runs must not
	// share with the machine.
	tmp := filepath.Join(dir, "tmp")
	if err = os.Mkdir(tmp, 0o700); err == nil {
		err = os.Setenv("TMPDIR", tmp)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startServe runs the real binary with cfg and waits for it to say where it
// listens.
func startServe(t *testing.T, cfgYAML string, env []string) *ferryproc.Server {
	t.Helper()
	return ferryproc.Serve(t, ferryBin, cfgYAML, env)
}

type result struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ferryBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func writeToken(t *testing.T, is *devissuer.Issuer, sample string, edit func(map[string]any)) string {
	t.Helper()
	return issuers.WriteToken(t, is, sample, edit)
}

func repoPolicies(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../../trustpolicies")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func brokerConfig(t *testing.T, gh, gl *devissuer.Issuer, auditPath string) string {
	t.Helper()
	return ferryproc.Config(t, repoPolicies(t), gh.URL(), gl.URL(), auditPath)
}

func startIssuers(t *testing.T) (gh, gl *devissuer.Issuer) {
	t.Helper()
	return issuers.Start(t)
}

func TestServeMintsAWSCredentialsTheAWSCLIAccepts(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the aws CLI is not installed")
		}
		t.Skip("the aws CLI is not installed")
	}
	gh, gl := startIssuers(t)
	sts := moto.Start(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	srv := startServe(t, brokerConfig(t, gh, gl, auditPath), sts.Env())

	// 1. ferry exchange → JSON → aws CLI with the minted keys.
	tokFile := writeToken(t, gh, "github-environment-production", nil)
	r := runBin(t, nil, "exchange", "--url", srv.URL, "--policy", "deploy-prod", "--token-file", tokFile)
	if r.code != 0 {
		t.Fatalf("ferry exchange: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var res struct {
		AWS struct {
			AccessKeyID     string `json:"access_key_id"`
			SecretAccessKey string `json:"secret_access_key"`
			SessionToken    string `json:"session_token"`
			RoleARN         string `json:"role_arn"`
		} `json:"aws"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("ferry exchange output: %v\n%s", err, r.stdout)
	}
	env := append(sts.Env(),
		"AWS_ACCESS_KEY_ID="+res.AWS.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+res.AWS.SecretAccessKey,
		"AWS_SESSION_TOKEN="+res.AWS.SessionToken)
	arn := callerARN(t, env)
	if !strings.Contains(arn, ":assumed-role/deploy-prod/") || !strings.Contains(arn, "11223344556") {
		t.Errorf("aws sts get-caller-identity = %s, want the deploy-prod role and a session naming the run", arn)
	}

	// 2. The same through credential_process, as an AWS profile uses it.
	tok2 := writeToken(t, gh, "github-environment-production", nil)
	cfgFile := filepath.Join(t.TempDir(), "config")
	profile := fmt.Sprintf("[profile ferry]\nregion = us-east-1\ncredential_process = %s exchange --url %s --policy deploy-prod --token-file %s --format credential-process\n",
		ferryBin, srv.URL, tok2)
	if err := os.WriteFile(cfgFile, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	env = append(sts.Env(), "AWS_CONFIG_FILE="+cfgFile, "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=ferry")
	if arn := callerARN(t, env); !strings.Contains(arn, ":assumed-role/deploy-prod/") {
		t.Errorf("credential_process profile: caller = %s", arn)
	}

	// 3. Refusals exit 1 and say why.
	bad := writeToken(t, gh, "github-environment-production", func(c map[string]any) { c["ref"] = "refs/heads/dev" })
	r = runBin(t, nil, "exchange", "--url", srv.URL, "--policy", "deploy-prod", "--token-file", bad)
	if r.code != 1 || !strings.Contains(r.stderr, `claim "ref" = "refs/heads/dev"`) {
		t.Errorf("a refused exchange: exit %d, stderr %q", r.code, r.stderr)
	}

	srv.Stop(t)

	// 4. The audit log verifies and holds every decision. botocore calls
	// credential_process again at once when the credentials expire within
	// its 15-minute refresh window, as 15m ones do; that second call is
	// refused as a replay, and botocore keeps the first credentials.
	v := runBin(t, nil, "audit", "verify", auditPath)
	if v.code != 0 || !strings.Contains(v.stdout, "chain intact") {
		t.Errorf("ferry audit verify: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	var allows, refs, replays int
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, auditPath)), "\n") {
		var rec struct{ Decision, Rule, Ref, Error string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.Decision == "allow":
			allows++
		case rec.Rule == "match.ref":
			refs++
		case rec.Rule == "replay":
			replays++
		default:
			t.Errorf("unexpected audit record %s", line)
		}
	}
	if allows != 2 || refs != 1 || replays > 1 {
		t.Errorf("audit: %d allows, %d ref refusals, %d replays; want 2, 1, at most 1", allows, refs, replays)
	}
	logs := readFile(t, auditPath) + srv.Stderr()
	for _, secret := range []string{res.AWS.SecretAccessKey, res.AWS.SessionToken, readFile(t, tokFile)} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret reached the audit log or server log: %.10s…", secret)
		}
	}
}

func callerARN(t *testing.T, env []string) string {
	t.Helper()
	cmd := exec.Command("aws", "sts", "get-caller-identity", "--output", "json")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aws sts get-caller-identity: %v\n%s", err, out)
	}
	var id struct{ Arn string }
	if err := json.Unmarshal(out, &id); err != nil {
		t.Fatalf("aws output: %v\n%s", err, out)
	}
	return id.Arn
}

func TestExchangeFindsTheTokenAsEachCIPlatformHandsItOut(t *testing.T) {
	gh, gl := startIssuers(t)
	sts := moto.Start(t)
	srv := startServe(t, brokerConfig(t, gh, gl, filepath.Join(t.TempDir(), "audit.log")), sts.Env())

	// GitHub Actions: the runner's token endpoint, asked for our audience.
	var gotAudience, gotAuth string
	var mu sync.Mutex
	actions := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAudience, gotAuth = r.URL.Query().Get("audience"), r.Header.Get("Authorization")
		mu.Unlock()
		c, err := devissuer.SampleClaims("github-push-main")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		c["aud"] = r.URL.Query().Get("audience")
		tok, err := gh.Sign(c)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"count": 1, "value": tok})
	}))
	defer actions.Close()
	githubEnv := filepath.Join(t.TempDir(), "github_env")
	r := runBin(t, []string{
		"GITHUB_ACTIONS=true",
		"ACTIONS_ID_TOKEN_REQUEST_URL=" + actions.URL + "/token?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN=runner-request-token",
		"GITHUB_ENV=" + githubEnv,
	}, "exchange", "--url", srv.URL, "--policy", "ci-artifacts", "--format", "github")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mu.Lock()
	if gotAudience != "ferry" || gotAuth != "Bearer runner-request-token" {
		t.Errorf("token request: audience %q, authorization %q", gotAudience, gotAuth)
	}
	mu.Unlock()
	exported := readFile(t, githubEnv)
	if !strings.Contains(exported, "FERRY_TOKEN<<") {
		t.Errorf("GITHUB_ENV = %q", exported)
	}
	tokenLine := strings.Split(exported, "\n")[1]
	if !strings.Contains(r.stdout, "::add-mask::"+tokenLine) {
		t.Errorf("the token was exported without being masked first:\n%s", r.stdout)
	}

	// GitLab CI: the id_tokens variable.
	tok, err := gl.Sign(mustSample(t, "gitlab-protected-deploy"))
	if err != nil {
		t.Fatal(err)
	}
	r = runBin(t, []string{"GITLAB_CI=true", "FERRY_ID_TOKEN=" + tok}, "exchange", "--url", srv.URL, "--policy", "gitlab-deploy", "--format", "env")
	if r.code != 0 {
		t.Fatalf("GitLab job: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"export AWS_ACCESS_KEY_ID='", "export AWS_SECRET_ACCESS_KEY='", "export AWS_SESSION_TOKEN='"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--format env lacks %s:\n%s", want, r.stdout)
		}
	}

	// Neither: a clear error.
	r = runBin(t, []string{"GITHUB_ACTIONS=true", "ACTIONS_ID_TOKEN_REQUEST_URL=", "FERRY_ID_TOKEN="}, "exchange", "--url", srv.URL, "--policy", "ci-artifacts")
	if r.code != 1 || !strings.Contains(r.stderr, "id-token: write") {
		t.Errorf("no token: exit %d, %q", r.code, r.stderr)
	}
	srv.Stop(t)
}

func mustSample(t *testing.T, name string) map[string]any {
	t.Helper()
	c, err := devissuer.SampleClaims(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCLIUsageAndBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage: ferry"},
		{"an unknown command", []string{"fly"}, 2, `unknown command "fly"`},
		{"version", []string{"version"}, 0, "ferry "},
		{"exchange without a url", []string{"exchange", "--policy", "p"}, 2, "--url"},
		{"exchange with a bad format", []string{"exchange", "--url", "http://127.0.0.1:1", "--policy", "p", "--format", "xml"}, 2, "--format"},
		{"exchange --format github outside GitHub Actions", []string{"exchange", "--url", "http://127.0.0.1:1", "--policy", "p", "--format", "github"}, 2, "needs GITHUB_ENV"},
		{"serve with a missing config", []string{"serve", "--config", "/nonexistent/ferry.yaml"}, 1, "read config"},
		{"serve with a bad flag", []string{"serve", "--nope"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, []string{"FERRY_URL=", "FERRY_POLICY=", "GITHUB_ENV="}, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s%s", r.code, tt.code, tt.want, r.stdout, r.stderr)
			}
		})
	}
	cfg := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nlisen: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, nil, "serve", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "key lisen is not a known key") {
		t.Errorf("a config with an unknown key: exit %d, %q", r.code, r.stderr)
	}
}

// TestServeStartFailuresExitCleanly covers what only starting the broker
// finds: each must be exit 1 with the reason, never a panic.
func TestServeStartFailuresExitCleanly(t *testing.T) {
	policies, err := filepath.Abs(filepath.Join("..", "..", "trustpolicies"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(extra string) string {
		return "listen: 127.0.0.1:0\npolicies: " + policies + "\n" +
			"issuers:\n  - {name: github, issuer: https://token.actions.githubusercontent.com, audiences: [ferry]}\n" +
			"  - {name: gitlab, issuer: https://gitlab.com, audiences: [ferry]}\n" + extra
	}
	tests := []struct {
		name, config, want string
	}{
		{"a signing key that does not exist", base("token: {issuer: https://ferry.example.com, signing_key: ./missing.pem}\n"), "token.signing_key"},
		{"a policy directory that does not exist", strings.Replace(base(""), policies, "./nope", 1), "nope"},
		{"a policy naming an issuer that is not configured", strings.Replace(base(""), "name: gitlab", "name: gitlab-selfmanaged", 1), `issuer "gitlab" is not configured`},
		{"an audit log that cannot be created", base("audit: {path: /proc/ferry-nope/audit.log}\n"), "audit log"},
		{"a Redis replay store that is not there", base("replay: {store: redis, redis_url: \"redis://127.0.0.1:1/0\"}\n"), "replay store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "ferry.yaml")
			if err := os.WriteFile(cfg, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runBin(t, nil, "serve", "--config", cfg)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "panic") {
				t.Errorf("exit %d, want 1 with %q:\n%s", r.code, tt.want, r.stderr)
			}
		})
	}
}

func TestDemoRunsEndToEnd(t *testing.T) {
	r := runBin(t, []string{"AWS_ENDPOINT_URL=", "AWS_ENDPOINT_URL_STS="}, "demo")
	if r.code != 0 {
		t.Fatalf("ferry demo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"verified with go-oidc",
		`claim "ref" = "refs/heads/dev"`,
		"pull_request_target",
		"hash chain intact",
		"AWS_ENDPOINT_URL is not set",
		"released and revoked",
		"after:  /v1/introspect says active=false",
		`"decision":"release"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

func TestDemoMintsFromALocalSTS(t *testing.T) {
	sts := moto.Start(t)
	r := runBin(t, sts.Env(), "demo")
	if r.code != 0 {
		t.Fatalf("ferry demo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "assumed role       arn:aws:sts::123456789012:assumed-role/deploy-prod/") {
		t.Errorf("demo output lacks the assumed role:\n%s", r.stdout)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
