package actions_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/broker"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
)

// actionMetadata is the part of action.yml the runner reads to start a
// JavaScript action.
type actionMetadata struct {
	Inputs map[string]struct {
		Default  *string `yaml:"default"`
		Required bool    `yaml:"required"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
	} `yaml:"outputs"`
	Runs struct {
		Using string `yaml:"using"`
		Main  string `yaml:"main"`
		Post  string `yaml:"post"`
	} `yaml:"runs"`
}

func loadAction(t *testing.T) (dir string, meta actionMetadata) {
	t.Helper()
	dir = filepath.Join(repoRoot(t), "actions", "github")
	data, err := os.ReadFile(filepath.Join(dir, "action.yml"))
	if err != nil {
		t.Fatalf("read action.yml: %v", err)
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		t.Fatalf("parse action.yml: %v", err)
	}
	return dir, meta
}

// actionRun is one finished step: its process result and the runner's
// files the step wrote to.
type actionRun struct {
	result
	env, outputs, state map[string]string
}

// runAction runs the action's main step in a job of its own; see
// ghJob.action.
func runAction(t *testing.T, runner *runnerTokenEndpoint, inputs map[string]string, extraEnv ...string) actionRun {
	t.Helper()
	return newJob(t, runner).action(inputs, extraEnv...)
}

// String shows a run for a failure message, with every credential it
// handed out (and every value it masked) redacted.
func (r actionRun) String() string {
	var secrets []string
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN", "FERRY_TOKEN"} {
		secrets = append(secrets, r.env[k])
	}
	for _, k := range []string{"aws-access-key-id", "aws-secret-access-key", "aws-session-token", "access-token", "token"} {
		secrets = append(secrets, r.outputs[k])
	}
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, redact(r.stdout, secrets...), redact(r.stderr, secrets...))
}

// checkMasked asserts the step registered each secret with ::add-mask::
// before it printed its summary, and printed it nowhere else: the runner
// swallows the add-mask command, so any other line is what the log shows.
func checkMasked(t *testing.T, r actionRun, secrets ...string) {
	t.Helper()
	lines := strings.Split(r.stdout, "\n")
	summary := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "Ferry: policy ") })
	for i, sec := range secrets {
		if sec == "" {
			t.Errorf("secret %d is empty", i)
			continue
		}
		at := slices.Index(lines, "::add-mask::"+escapeCommandData(sec))
		switch {
		case at < 0:
			t.Errorf("secret %d was never masked", i)
		case summary >= 0 && at > summary:
			t.Errorf("secret %d was masked only after the step printed its summary", i)
		}
		for n, l := range lines {
			if strings.Contains(l, sec) && !strings.HasPrefix(l, "::add-mask::") {
				t.Errorf("secret %d appears unmasked on stdout line %d", i, n+1)
			}
		}
		if strings.Contains(r.stderr, sec) {
			t.Errorf("secret %d appears on stderr", i)
		}
	}
}

// escapeCommandData is how @actions/core writes a value into a workflow
// command, and the runner reads it back.
func escapeCommandData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func TestGitHubActionMintsAWSCredentials(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")

	r := runAction(t, runner, map[string]string{
		"url": e.broker.URL, "policy": "gh-deploy", "duration": "20m", "aws-region": "eu-west-1",
	})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	reqs, issued := runner.snapshot()
	if len(reqs) != 1 || reqs[0].Audience != "ferry" || reqs[0].Authorization != "Bearer "+runner.RequestToken || reqs[0].APIVersion != "2.0" {
		t.Errorf("token requests to the runner = %+v; want one, for audience ferry, with the request token", reqs)
	}

	for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION"} {
		if r.env[name] == "" {
			t.Errorf("GITHUB_ENV lacks %s", name)
		}
	}
	if r.env["AWS_REGION"] != "eu-west-1" || r.env["AWS_DEFAULT_REGION"] != "eu-west-1" {
		t.Errorf("AWS_REGION = %q, AWS_DEFAULT_REGION = %q; want the aws-region input", r.env["AWS_REGION"], r.env["AWS_DEFAULT_REGION"])
	}
	arn := awsCaller(t, e.sts.URL, r.env["AWS_ACCESS_KEY_ID"], r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"])
	if !strings.Contains(arn, ":assumed-role/ferry-action-deploy/") {
		t.Errorf("the exported credentials are %s, want a session of role ferry-action-deploy", arn)
	}

	if r.outputs["credential-type"] != "aws" || r.outputs["policy"] != "gh-deploy" || r.outputs["request-id"] == "" {
		t.Errorf("outputs credential-type %q, policy %q, request-id %q", r.outputs["credential-type"], r.outputs["policy"], r.outputs["request-id"])
	}
	if r.outputs["aws-access-key-id"] != r.env["AWS_ACCESS_KEY_ID"] {
		t.Error("output aws-access-key-id differs from the exported AWS_ACCESS_KEY_ID")
	}
	if r.outputs["role-arn"] != "arn:aws:iam::123456789012:role/ferry-action-deploy" || r.outputs["aws-account-id"] != "123456789012" {
		t.Errorf("output role-arn = %q, aws-account-id = %q", r.outputs["role-arn"], r.outputs["aws-account-id"])
	}
	// 20m, not the policy's hour: the duration input reached STS. (STS
	// cannot go below 15m; the broker rounds shorter requests up.)
	expiresWithin(t, "output expiration", r.outputs["expiration"], 20*time.Minute)
	if _, ok := r.outputs["aws-secret-access-key"]; ok {
		t.Error("aws-secret-access-key was output without output-credentials")
	}
	checkMasked(t, r, r.env["AWS_ACCESS_KEY_ID"], r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"], issued[0])
	if !strings.Contains(r.stdout, `Ferry: policy "gh-deploy" granted AWS credentials`) {
		t.Errorf("no summary line:\n%s", r)
	}
	if strings.Contains(e.broker.Stderr(), issued[0]) {
		t.Error("the job's token reached the broker's log")
	}
}

func TestGitHubActionOutputsCredentialsWithoutExporting(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	r := runAction(t, runner, map[string]string{
		"url": e.broker.URL + "/", "policy": "gh-deploy", "export-env": "false", "output-credentials": "true",
	})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	if len(r.env) != 0 {
		t.Errorf("export-env: false, yet GITHUB_ENV has %d variables", len(r.env))
	}
	arn := awsCaller(t, e.sts.URL, r.outputs["aws-access-key-id"], r.outputs["aws-secret-access-key"], r.outputs["aws-session-token"])
	if !strings.Contains(arn, ":assumed-role/ferry-action-deploy/") {
		t.Errorf("the output credentials are %s", arn)
	}
	// No duration asked: the policy's hour.
	expiresWithin(t, "output expiration", r.outputs["expiration"], time.Hour)
	checkMasked(t, r, r.outputs["aws-access-key-id"], r.outputs["aws-secret-access-key"], r.outputs["aws-session-token"])
}

func TestGitHubActionSetsTheTokenOutput(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-push-main")
	r := runAction(t, runner, map[string]string{"url": e.broker.URL, "policy": "gh-artifacts"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	tok := r.outputs["token"]
	claims := verifyFerryToken(t, e.broker.URL, tok)
	if claims["aud"] != "https://artifacts.internal.example" || claims["repository"] != "acme/app" || claims["iss"] != "https://ferry.example.com" {
		t.Errorf("token claims aud %v, repository %v, iss %v", claims["aud"], claims["repository"], claims["iss"])
	}
	if r.env["FERRY_TOKEN"] != tok || r.outputs["credential-type"] != "token" {
		t.Errorf("FERRY_TOKEN exported: %t; credential-type %q", r.env["FERRY_TOKEN"] == tok, r.outputs["credential-type"])
	}
	expiresWithin(t, "output expiration", r.outputs["expiration"], 5*time.Minute)
	_, issued := runner.snapshot()
	checkMasked(t, r, tok, issued[0])
}

func TestGitHubActionExportsAGCPAccessToken(t *testing.T) {
	e := newEnv(t)
	// `ferry serve` cannot point its IAM Credentials client at a local
	// server, so this broker runs in-process, built by the same
	// broker.New from the same kind of config, in front of a real gRPC
	// IAM Credentials server (gcpfake).
	gcp := gcpfake.Start(t, nil)
	cfg, err := config.Parse([]byte(e.brokerConfig(t, "")), t.TempDir(), "test config")
	if err != nil {
		t.Fatal(err)
	}
	gm, err := gcpiam.New(context.Background(), gcp.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(context.Background(), cfg, broker.Options{Minters: map[string]grant.Minter{gcpiam.KindName: gm}})
	if err != nil {
		t.Fatalf("build broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})

	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	r := runAction(t, runner, map[string]string{"url": "http://" + ln.Addr().String(), "policy": "gh-gcp", "duration": "5m"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	const want = "ya29.fake-deploy@acme-prod.iam.gserviceaccount.com"
	if r.env["CLOUDSDK_AUTH_ACCESS_TOKEN"] != want || r.env["GOOGLE_OAUTH_ACCESS_TOKEN"] != want || r.outputs["access-token"] != want {
		t.Errorf("the GCP token was not exported and output as minted")
	}
	if r.outputs["service-account"] != "deploy@acme-prod.iam.gserviceaccount.com" || r.outputs["credential-type"] != "gcp" {
		t.Errorf("outputs service-account %q, credential-type %q", r.outputs["service-account"], r.outputs["credential-type"])
	}
	expiresWithin(t, "output expiration", r.outputs["expiration"], 5*time.Minute)
	reqs := gcp.Requests()
	if len(reqs) != 1 || reqs[0].GetLifetime().AsDuration() != 5*time.Minute {
		t.Errorf("IAM Credentials requests = %v; want one for the asked 5m", reqs)
	}
	_, issued := runner.snapshot()
	checkMasked(t, r, want, issued[0])
}

func TestGitHubActionFailsWithTheBrokersReason(t *testing.T) {
	e := newEnv(t)
	// A push to main has no environment claim: gh-deploy refuses it.
	runner := startRunnerTokenEndpoint(t, e.gh, "github-push-main")
	r := runAction(t, runner, map[string]string{"url": e.broker.URL, "policy": "gh-deploy"})
	if r.code == 0 {
		t.Fatalf("a refused exchange exited 0:\n%s", r)
	}
	if !strings.Contains(r.stdout, "::error::Ferry: access_denied: ") || !strings.Contains(r.stdout, `"environment"`) || !strings.Contains(r.stdout, "request_id ") {
		t.Errorf("the failure does not carry the broker's code, description and request id:\n%s", r)
	}
	_, issued := runner.snapshot()
	if len(issued) != 1 {
		t.Fatalf("%d tokens issued, want 1", len(issued))
	}
	checkMasked(t, r, issued[0])
	if len(r.env) != 0 || len(r.outputs) != 0 {
		t.Errorf("a refused exchange exported %d variables and %d outputs", len(r.env), len(r.outputs))
	}

	// An unknown policy is refused the same way.
	r = runAction(t, runner, map[string]string{"url": e.broker.URL, "policy": "no-such-policy"})
	if r.code == 0 || !strings.Contains(r.stdout, "::error::Ferry: access_denied: ") {
		t.Errorf("an unknown policy:\n%s", r)
	}
}

func TestGitHubActionRefusesBeforeSendingTheToken(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	tests := []struct {
		name   string
		inputs map[string]string
		env    []string
		want   string
	}{
		{"plain http to a remote host", map[string]string{"url": "http://ferry.example.com", "policy": "gh-deploy"}, nil, "must use https"},
		{"a URL with credentials", map[string]string{"url": "https://user:pw@ferry.example.com", "policy": "gh-deploy"}, nil, "must not carry credentials"},
		{"no policy", map[string]string{"url": e.broker.URL}, nil, "Input required and not supplied: policy"},
		{"a bad duration", map[string]string{"url": e.broker.URL, "policy": "gh-deploy", "duration": "forever"}, nil, "not a duration"},
		{"a bad max-attempts", map[string]string{"url": e.broker.URL, "policy": "gh-deploy", "max-attempts": "0"}, nil, "max-attempts"},
		{"no id-token permission", map[string]string{"url": e.broker.URL, "policy": "gh-deploy"},
			[]string{"ACTIONS_ID_TOKEN_REQUEST_URL=", "ACTIONS_ID_TOKEN_REQUEST_TOKEN="}, "id-token: write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runAction(t, runner, tt.inputs, tt.env...)
			if r.code == 0 || !strings.Contains(r.stdout, "::error::") || !strings.Contains(r.stdout, tt.want) {
				t.Errorf("want a failure saying %q:\n%s", tt.want, r)
			}
		})
	}
	if reqs, _ := runner.snapshot(); len(reqs) != 0 {
		t.Errorf("the runner was asked for %d tokens; a step that cannot use one must not ask", len(reqs))
	}
}

func TestGitHubActionRetriesWhenRateLimited(t *testing.T) {
	e := newEnv(t)
	// One request per three seconds per address: Retry-After is 3.
	b := e.startBroker(t, "rate_limit:\n  per_second: 0.34\n  burst: 1\n")
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")

	exhaustRateLimit(t, b.URL)
	r := runAction(t, runner, map[string]string{"url": b.URL, "policy": "gh-deploy"})
	if r.code != 0 {
		t.Fatalf("the action did not get through a 429:\n%s", r)
	}
	if !strings.Contains(r.stdout, "::warning::Ferry: rate_limited: ") || !strings.Contains(r.stdout, "retrying in ") {
		t.Errorf("no retry warning:\n%s", r)
	}
	if r.elapsed < 2*time.Second {
		t.Errorf("the action retried after %s; the broker asked for 3s", r.elapsed)
	}
	if r.env["AWS_SESSION_TOKEN"] == "" {
		t.Error("no credentials after the retry")
	}
	if _, issued := runner.snapshot(); len(issued) != 1 {
		t.Errorf("%d tokens fetched; a 429 does not spend the token, so one is enough", len(issued))
	}

	// max-attempts bounds it: one attempt, and the 429 is the answer.
	exhaustRateLimit(t, b.URL)
	r = runAction(t, runner, map[string]string{"url": b.URL, "policy": "gh-deploy", "max-attempts": "1"})
	if r.code == 0 || !strings.Contains(r.stdout, "::error::Ferry: rate_limited: too many requests") {
		t.Errorf("max-attempts 1 against a rate-limited broker:\n%s", r)
	}
}
