package actions_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// checkPrivateFile fails unless path is a 0600 file inside the job's
// RUNNER_TEMP and outside its workspace.
func checkPrivateFile(t *testing.T, j *ghJob, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	if !strings.HasPrefix(path, j.temp+string(os.PathSeparator)) || strings.HasPrefix(path, j.workspace) {
		t.Errorf("%s is not in RUNNER_TEMP (%s), out of the workspace", path, j.temp)
	}
}

func TestGitHubActionAWSProfileKeepsTheCLIWorkingAcrossAnExpiry(t *testing.T) {
	requireTool(t, "aws")
	e := newEnv(t)
	clock := startSTSClock(t, e.sts.URL)
	b := e.startBrokerVia(t, clock.URL)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	j := newJob(t, runner)
	j.awkwardTemp()
	j.extra = awsClientEnv(t, e.sts.URL)

	// The step's credential runs out two seconds after STS mints it.
	clock.expireNext(2 * time.Second)
	r := j.action(map[string]string{"url": b.URL, "policy": "gh-deploy", "aws-profile": "deploy", "aws-region": "us-east-1"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	cfgFile := r.env["AWS_CONFIG_FILE"]
	checkPrivateFile(t, j, cfgFile)
	checkPrivateFile(t, j, filepath.Join(filepath.Dir(cfgFile), "deploy.cache.json"))
	checkPrivateFile(t, j, filepath.Join(filepath.Dir(cfgFile), "deploy.json"))
	if r.env["AWS_PROFILE"] != "deploy" || r.outputs["aws-profile"] != "deploy" || r.outputs["aws-config-file"] != cfgFile {
		t.Errorf("AWS_PROFILE %q, outputs aws-profile %q aws-config-file %q", r.env["AWS_PROFILE"], r.outputs["aws-profile"], r.outputs["aws-config-file"])
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		if _, ok := r.env[k]; ok {
			t.Errorf("aws-profile exported %s, which the SDKs would use before the profile", k)
		}
	}
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "[profile deploy]\n") || !strings.Contains(string(cfg), "credential-process/index.js") || !strings.Contains(string(cfg), "region = us-east-1") {
		t.Errorf("the profile is not what the SDKs need:\n%s", cfg)
	}
	if strings.Contains(string(cfg), r.outputs["aws-access-key-id"]) {
		t.Error("the AWS config file holds the credential itself")
	}
	exp, err := time.Parse(time.RFC3339, r.outputs["expiration"])
	if err != nil || time.Until(exp) > 5*time.Second || clock.rewrites() != 1 {
		t.Fatalf("the first credential expires at %q (err %v, %d rewrites); the test set it two seconds out", r.outputs["expiration"], err, clock.rewrites())
	}

	// A later step, after that credential expired: the aws CLI asks the
	// profile's credential_process, which exchanges a fresh OIDC token.
	waitUntil(t, exp.Add(200*time.Millisecond))
	arns := callerARNs(t, j, 3)
	if !allContain(arns, ":assumed-role/ferry-action-deploy/") {
		t.Errorf("the aws CLI ran as %v, want the deploy role every time", arns)
	}
	grants := b.grants(t, "gh-deploy")
	if len(grants) != 2 {
		t.Fatalf("the audit log has %d grants for gh-deploy, want 2: the step's and one refresh", len(grants))
	}
	if grants[1].Credential.ID == r.outputs["aws-access-key-id"] || !grants[1].Credential.ExpiresAt.After(exp.Add(30*time.Minute)) {
		t.Errorf("the refresh grant %+v is not a new, full-length credential", grants[1].Credential)
	}
	reqs, issued := runner.snapshot()
	if len(reqs) != 2 || reqs[1].Audience != "ferry" || reqs[1].Authorization != "Bearer "+runner.RequestToken {
		t.Errorf("token requests to the runner = %+v; want the step's and the refresh's, for audience ferry", reqs)
	}
	if logs := e.broker.Stderr() + b.Stderr(); strings.Contains(logs, issued[1]) {
		t.Error("the refresh's token reached the broker's log")
	}
}

func TestGitHubActionAWSProfileSpendsOneGrantForManyCommands(t *testing.T) {
	requireTool(t, "aws")
	e := newEnv(t)
	b := e.startBrokerVia(t, e.sts.URL)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	j := newJob(t, runner)
	j.extra = awsClientEnv(t, e.sts.URL)

	// A 15-minute grant: botocore finds it inside its 15-minute refresh
	// window from the first use and calls the credential_process again on
	// every use, in every command. The cache answers all of them.
	r := j.action(map[string]string{"url": b.URL, "policy": "gh-deploy-15m", "aws-profile": "deploy", "aws-region": "us-east-1"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	arns := callerARNs(t, j, 4)
	if !allContain(arns, ":assumed-role/ferry-action-deploy/") {
		t.Errorf("the aws CLI ran as %v", arns)
	}
	if g := b.grants(t, "gh-deploy-15m"); len(g) != 1 {
		t.Errorf("4 aws commands within one credential's margin spent %d grants, want the step's 1", len(g))
	}
	if reqs, _ := runner.snapshot(); len(reqs) != 1 {
		t.Errorf("%d OIDC tokens were requested, want 1", len(reqs))
	}
	for _, rec := range b.records(t) {
		if rec.Decision != "allow" {
			t.Errorf("audit has a %s record (%s %s): a refresh was refused", rec.Decision, rec.Error, rec.Rule)
		}
	}
}

func TestGitHubActionAWSProfileServesALongLivedSDKClient(t *testing.T) {
	e := newEnv(t)
	clock := startSTSClock(t, e.sts.URL)
	b := e.startBrokerVia(t, clock.URL)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	j := newJob(t, runner)
	j.awkwardTemp()

	clock.expireNext(2 * time.Second)
	r := j.action(map[string]string{"url": b.URL, "policy": "gh-deploy", "aws-profile": "deploy"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	// The SDK runs its credential_process with this process's environment,
	// as a program in a later step would: the job's.
	for _, kv := range append(j.stepEnv(), awsClientEnv(t, e.sts.URL)...) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One client for the whole test: aws-sdk-go-v2 loads the profile,
	// wraps its process provider in a CredentialsCache and asks again only
	// when what it holds has expired.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"), config.WithBaseEndpoint(e.sts.URL))
	if err != nil {
		t.Fatalf("load the job's AWS config: %v", err)
	}
	client := sts.NewFromConfig(cfg)
	call := func() string {
		t.Helper()
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			t.Fatalf("GetCallerIdentity with the profile's credentials: %v", err)
		}
		creds, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(aws.ToString(out.Arn), ":assumed-role/ferry-action-deploy/") {
			t.Errorf("caller %s", aws.ToString(out.Arn))
		}
		return creds.AccessKeyID
	}

	first := call()
	if first != r.outputs["aws-access-key-id"] {
		t.Error("the SDK's first credential is not the one the step cached")
	}
	exp, err := time.Parse(time.RFC3339, r.outputs["expiration"])
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, exp.Add(200*time.Millisecond))
	second := call()
	if second == first {
		t.Fatal("past the first credential's expiry the SDK still signs with it")
	}
	for i := 0; i < 5; i++ {
		if k := call(); k != second {
			t.Errorf("call %d used %s…, want the refreshed credential %s… until it nears its expiry", i, k[:8], second[:8])
		}
	}
	grants := b.grants(t, "gh-deploy")
	if len(grants) != 2 || grants[1].Credential.ID != second {
		t.Errorf("the audit log has %d grants, want 2 with the second for the refreshed key", len(grants))
	}
}

func TestGitHubActionGivesOneStepSeveralCredentials(t *testing.T) {
	requireTool(t, "aws")
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	j := newJob(t, runner)
	j.extra = awsClientEnv(t, e.sts.URL)

	r := j.action(map[string]string{
		"url": e.broker.URL,
		"policies": `
			gh-deploy       aws-profile=prod
			gh-deploy-stage aws-profile=stage duration=20m
			gh-artifacts    env-prefix=ARTIFACTS_
		`,
		"aws-region": "us-east-1",
	})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	if arns := callerARNs(t, j, 1, "--profile", "prod"); !allContain(arns, ":assumed-role/ferry-action-deploy/") || !allContain(arns, "123456789012") {
		t.Errorf("profile prod is %v", arns)
	}
	if arns := callerARNs(t, j, 1, "--profile", "stage"); !allContain(arns, ":assumed-role/ferry-action-stage/") || !allContain(arns, "210987654321") {
		t.Errorf("profile stage is %v", arns)
	}
	claims := verifyFerryToken(t, e.broker.URL, r.env["ARTIFACTS_FERRY_TOKEN"])
	if claims["aud"] != "https://artifacts.internal.example" {
		t.Errorf("ARTIFACTS_FERRY_TOKEN has aud %v", claims["aud"])
	}
	if _, ok := r.env["FERRY_TOKEN"]; ok {
		t.Error("the env-prefix credential was also exported unprefixed")
	}
	if _, ok := r.env["AWS_PROFILE"]; ok {
		t.Error("a list of profiles picked one as AWS_PROFILE")
	}

	var creds []struct{ Policy, Type, Destination, Expiration string }
	if err := json.Unmarshal([]byte(r.outputs["credentials"]), &creds); err != nil || len(creds) != 3 {
		t.Fatalf("output credentials = %s (err %v), want three entries", r.outputs["credentials"], err)
	}
	if creds[1].Policy != "gh-deploy-stage" || creds[1].Destination != "profile stage" || creds[2].Type != "token" {
		t.Errorf("output credentials = %+v", creds)
	}
	expiresWithin(t, "gh-deploy-stage expiration", creds[1].Expiration, 20*time.Minute)
	if _, ok := r.outputs["aws-access-key-id"]; ok {
		t.Error("with policies, the per-credential outputs are set (for which one?)")
	}
	if reqs, _ := runner.snapshot(); len(reqs) != 3 {
		t.Errorf("%d tokens requested for 3 policies", len(reqs))
	}

	// The post step takes it all back.
	p := j.post(r)
	if p.code != 0 {
		t.Fatalf("the post step failed:\n%s", p)
	}
	for _, k := range []string{"AWS_CONFIG_FILE", "ARTIFACTS_FERRY_TOKEN", "AWS_REGION"} {
		if v, ok := p.env[k]; !ok || v != "" {
			t.Errorf("the post step left %s as %q (set: %t), want it cleared", k, v, ok)
		}
	}
	if _, err := os.Stat(r.env["AWS_CONFIG_FILE"]); !os.IsNotExist(err) {
		t.Errorf("the AWS config file is still there after the post step (%v)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(j.temp, "ferry", "*")); len(left) != 0 {
		t.Errorf("the post step left %v in RUNNER_TEMP", left)
	}
	for _, id := range []string{creds[0].Policy, creds[1].Policy} {
		if !strings.Contains(p.stdout, id) {
			t.Errorf("the post step does not name the credential of %s:\n%s", id, p)
		}
	}
}

func TestGitHubActionRefusesTwoCredentialsInTheSameVariables(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	tests := []struct{ name, policies, want string }{
		{"two AWS credentials into AWS_*", "gh-deploy\ngh-deploy-stage", `policies "gh-deploy" and "gh-deploy-stage" would all export into the same variables`},
		{"one profile twice", "gh-deploy aws-profile=p\ngh-deploy-stage aws-profile=p", `aws-profile "p" appears twice`},
		{"one prefix twice", "gh-deploy env-prefix=A_\ngh-artifacts env-prefix=A_", `env-prefix "A_" appears twice`},
		{"a typo", "gh-deploy aws_profile=p", `unknown option "aws_profile"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runAction(t, runner, map[string]string{"url": e.broker.URL, "policies": tt.policies})
			if r.code == 0 || !strings.Contains(r.stdout, "::error::Ferry: ") || !strings.Contains(r.stdout, tt.want) {
				t.Errorf("want a failure saying %q:\n%s", tt.want, r)
			}
			if len(r.env) != 0 || len(r.state) != 0 {
				t.Errorf("a refused list exported %d variables and saved state %v", len(r.env), r.state)
			}
		})
	}
	if reqs, _ := runner.snapshot(); len(reqs) != 0 {
		t.Errorf("%d tokens were requested; a list that cannot be exported must not spend any", len(reqs))
	}

	// A profile name the shared credentials file already has would never
	// reach the credential_process: refused before a token is spent too.
	j := newJob(t, runner)
	shared := filepath.Join(j.dir, "credentials")
	if err := os.WriteFile(shared, []byte("[deploy]\naws_access_key_id = AKIAEXAMPLE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := j.action(map[string]string{"url": e.broker.URL, "policy": "gh-deploy", "aws-profile": "deploy"}, "AWS_SHARED_CREDENTIALS_FILE="+shared)
	if r.code == 0 || !strings.Contains(r.stdout, "defines profile deploy") {
		t.Errorf("a shadowed profile:\n%s", r)
	}
	if reqs, _ := runner.snapshot(); len(reqs) != 0 {
		t.Errorf("%d tokens were requested for a shadowed profile", len(reqs))
	}
}
