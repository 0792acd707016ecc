package awssts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

const roleARN = "arn:aws:iam::" + moto.AccountID + ":role/ci/deploy-prod"

func TestAssumeRoleAgainstMoto(t *testing.T) {
	t.Parallel()
	server := moto.Start(t)
	minter := awssts.NewFromConfig(server.AWSConfig())

	tests := []struct {
		name            string
		req             awssts.Request
		wantDuration    time.Duration
		wantSessionName string
	}{
		{
			name:            "a plain request gets the duration it asked for",
			req:             awssts.Request{RoleARN: roleARN, Duration: time.Hour, SessionName: "ferry-01J0000000"},
			wantDuration:    time.Hour,
			wantSessionName: "ferry-01J0000000",
		},
		{
			name:            "a duration under STS's floor is raised to 15 minutes",
			req:             awssts.Request{RoleARN: roleARN, Duration: time.Minute, SessionName: "acme/app"},
			wantDuration:    15 * time.Minute,
			wantSessionName: "acme@app",
		},
		{
			name: "policy, source identity and tags from hostile claims are sent sanitised",
			req: awssts.Request{
				RoleARN:        roleARN,
				Duration:       30 * time.Minute,
				SessionName:    "repo:acme/app:ref:refs/heads/main",
				SourceIdentity: "aws:octocat",
				SessionPolicy: `{
					"Version": "2012-10-17",
					"Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::artifacts/acme/app/*"}]
				}`,
				Tags: []awssts.Tag{{"repository", "acme/app"}, {"Repository", "dup"}, {"actor", "dependabot[bot]"}, {"", "x"}},
			},
			wantDuration:    30 * time.Minute,
			wantSessionName: "repo-acme@app-ref-refs@heads@main",
		},
		{
			// moto refuses a RoleSessionName over 64 characters, as STS does.
			name:            "a session name far over 64 characters is cut so STS accepts it",
			req:             awssts.Request{RoleARN: roleARN, Duration: time.Hour, SessionName: strings.Repeat("long-org/long-repo", 12)},
			wantDuration:    time.Hour,
			wantSessionName: awssts.SanitizeSessionName(strings.Repeat("long-org/long-repo", 12)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := time.Now()
			creds, err := minter.AssumeRole(context.Background(), tt.req)
			after := time.Now()
			if err != nil {
				t.Fatalf("AssumeRole: %v", err)
			}
			if creds.AccessKeyID == "" || creds.SecretAccessKey == "" || creds.SessionToken == "" {
				t.Fatalf("AssumeRole returned empty credentials: %#v", creds)
			}
			// STS stamps the expiry while handling the call, so it lies within
			// the call's span plus the duration; a second either side absorbs
			// moto's microsecond rounding.
			earliest := before.Add(tt.wantDuration - time.Second)
			latest := after.Add(tt.wantDuration + time.Second)
			if creds.Expiration.Before(earliest) || creds.Expiration.After(latest) {
				t.Errorf("Expiration = %s, want between %s and %s", creds.Expiration, earliest, latest)
			}
			if creds.RoleARN != roleARN {
				t.Errorf("RoleARN = %q, want %q", creds.RoleARN, roleARN)
			}
			if creds.SessionName != tt.wantSessionName {
				t.Errorf("SessionName = %q, want %q", creds.SessionName, tt.wantSessionName)
			}
			wantARN := "arn:aws:sts::" + moto.AccountID + ":assumed-role/deploy-prod/" + tt.wantSessionName
			if creds.AssumedRoleARN != wantARN {
				t.Errorf("AssumedRoleARN = %q, want %q", creds.AssumedRoleARN, wantARN)
			}

			// The credentials work: the real aws CLI, given only them, is
			// recognised as the assumed role.
			identity := callerIdentity(t, server, append(server.Env(),
				"AWS_ACCESS_KEY_ID="+creds.AccessKeyID,
				"AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
				"AWS_SESSION_TOKEN="+creds.SessionToken,
			))
			if identity.Arn != wantARN {
				t.Errorf("aws sts get-caller-identity Arn = %q, want %q", identity.Arn, wantARN)
			}
		})
	}
}

func TestSourceIdentityIsSentOnlyWhenGiven(t *testing.T) {
	t.Parallel()
	minter := awssts.NewFromConfig(moto.Start(t).AWSConfig())
	tests := []struct {
		name, in, want string
	}{
		{"no source identity sends none", "", ""},
		{"a source identity is sent sanitised", "aws:octocat", "aws-octocat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := minter.AssumeRole(context.Background(), awssts.Request{
				RoleARN: roleARN, Duration: time.Hour, SessionName: "s1", SourceIdentity: tt.in,
			})
			if err != nil {
				t.Fatalf("AssumeRole: %v", err)
			}
			if creds.SourceIdentity != tt.want {
				t.Errorf("SourceIdentity = %q, want %q", creds.SourceIdentity, tt.want)
			}
		})
	}
}

func TestNewFindsSTSThroughTheSDKEnvironment(t *testing.T) {
	server := moto.Start(t)
	for _, kv := range server.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	// Only the STS-specific endpoint variable, and no region at all: New must
	// pick both up the SDK's way and fall back to us-east-1.
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_STS", server.URL)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")

	minter, err := awssts.New(context.Background())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	creds, err := minter.AssumeRole(context.Background(), awssts.Request{RoleARN: roleARN, Duration: time.Hour, SessionName: "from-env"})
	if err != nil {
		t.Fatalf("AssumeRole through the environment's endpoint: %v", err)
	}
	if want := "arn:aws:sts::" + moto.AccountID + ":assumed-role/deploy-prod/from-env"; creds.AssumedRoleARN != want {
		t.Errorf("AssumedRoleARN = %q, want %q", creds.AssumedRoleARN, want)
	}
}

func TestCredentialProcessWorksWithTheAWSCLI(t *testing.T) {
	t.Parallel()
	server := moto.Start(t)
	creds, err := awssts.NewFromConfig(server.AWSConfig()).AssumeRole(context.Background(),
		awssts.Request{RoleARN: roleARN, Duration: time.Hour, SessionName: "credential-process"})
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	out, err := creds.CredentialProcessJSON()
	if err != nil {
		t.Fatalf("CredentialProcessJSON: %v", err)
	}

	// The CLI runs credential_process itself (split like a shell would, no
	// shell) and must get its credentials from nowhere else: the profile's
	// command is the only source configured.
	dir := t.TempDir()
	credsFile := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(credsFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skipf("no cat to act as credential_process: %v", err)
	}
	configFile := filepath.Join(dir, "config")
	profile := fmt.Sprintf("[profile ferry]\ncredential_process = %s %s\nregion = %s\n", cat, credsFile, moto.Region)
	if err := os.WriteFile(configFile, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(server.Env(),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_CONFIG_FILE="+configFile,
	)
	identity := callerIdentity(t, server, env, "--profile", "ferry")
	if want := "arn:aws:sts::" + moto.AccountID + ":assumed-role/deploy-prod/credential-process"; identity.Arn != want {
		t.Errorf("Arn via credential_process = %q, want %q", identity.Arn, want)
	}
}

func TestCredentialProcessJSON(t *testing.T) {
	creds := &awssts.Credentials{
		AccessKeyID:     "ASIAEXAMPLE",
		SecretAccessKey: "secret/key+",
		SessionToken:    "token==",
		Expiration:      time.Date(2026, 11, 23, 11, 15, 0, 999_000_000, time.FixedZone("CET", 3600)),
	}
	got, err := creds.CredentialProcessJSON()
	if err != nil {
		t.Fatalf("CredentialProcessJSON: %v", err)
	}
	want := `{"Version":1,"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret/key+","SessionToken":"token==","Expiration":"2026-11-23T10:15:00Z"}`
	if string(got) != want {
		t.Errorf("CredentialProcessJSON =\n %s\nwant\n %s", got, want)
	}

	incomplete := []struct {
		name  string
		creds awssts.Credentials
	}{
		{"no session token", awssts.Credentials{AccessKeyID: "a", SecretAccessKey: "s", Expiration: time.Now()}},
		{"no expiration", awssts.Credentials{AccessKeyID: "a", SecretAccessKey: "s", SessionToken: "t"}},
		{"no secret key", awssts.Credentials{AccessKeyID: "a", SessionToken: "t", Expiration: time.Now()}},
	}
	for _, tt := range incomplete {
		t.Run("refused with "+tt.name, func(t *testing.T) {
			if out, err := tt.creds.CredentialProcessJSON(); err == nil {
				t.Errorf("CredentialProcessJSON = %s, want an error", out)
			}
		})
	}
}

func TestPrintingOrLoggingCredentialsHidesTheSecrets(t *testing.T) {
	creds := &awssts.Credentials{
		AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "SECRET-SHOULD-NOT-APPEAR", SessionToken: "TOKEN-SHOULD-NOT-APPEAR",
		Expiration: time.Now(), AssumedRoleARN: "arn:aws:sts::1:assumed-role/r/s",
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("minted", "creds", creds, "value", *creds)
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", creds), "%+v": fmt.Sprintf("%+v", creds), "%#v": fmt.Sprintf("%#v", creds),
		"String": creds.String(), "%v of a value": fmt.Sprintf("%v", *creds), "slog": logged.String(),
	}
	for how, out := range outputs {
		if strings.Contains(out, creds.SecretAccessKey) || strings.Contains(out, creds.SessionToken) {
			t.Errorf("%s shows a secret: %s", how, out)
		}
		if !strings.Contains(out, creds.AccessKeyID) {
			t.Errorf("%s does not show the access key id, which is not secret: %s", how, out)
		}
	}
}

func TestAssumeRoleRefusesBadRequestsWithoutCallingSTS(t *testing.T) {
	t.Parallel()
	// Nothing listens here: a request that wrongly reached STS would fail with
	// an *UpstreamError instead of a *grant.BadGrantError.
	minter := awssts.NewFromConfig(endpointConfig(closedPort(t)))
	valid := awssts.Request{RoleARN: roleARN, Duration: time.Hour, SessionName: "s"}
	tests := []struct {
		name   string
		change func(*awssts.Request)
	}{
		{"no role ARN", func(r *awssts.Request) { r.RoleARN = "" }},
		{"a role ARN that is not an ARN", func(r *awssts.Request) { r.RoleARN = "deploy-prod" }},
		{"a user ARN instead of a role ARN", func(r *awssts.Request) { r.RoleARN = "arn:aws:iam::123456789012:user/bob" }},
		{"an ARN of another service", func(r *awssts.Request) { r.RoleARN = "arn:aws:s3:::role/bucket" }},
		{"a role ARN without a role name", func(r *awssts.Request) { r.RoleARN = "arn:aws:iam::123456789012:role/" }},
		{"no session name", func(r *awssts.Request) { r.SessionName = "" }},
		{"a duration over 12 hours", func(r *awssts.Request) { r.Duration = 12*time.Hour + time.Second }},
		{"a session policy that is not JSON", func(r *awssts.Request) { r.SessionPolicy = `{"Version": "2012-10-17",` }},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			req := valid
			tt.change(&req)
			creds, err := minter.AssumeRole(context.Background(), req)
			var bad *grant.BadGrantError
			if !errors.As(err, &bad) || bad.Kind != "aws" {
				t.Fatalf("AssumeRole = %v, %v; want a *grant.BadGrantError of kind aws", creds, err)
			}
			var upstream *awssts.UpstreamError
			if errors.As(err, &upstream) {
				t.Errorf("AssumeRole reached STS: %v", err)
			}
		})
	}
}

func TestAssumeRoleReportsUpstreamFailures(t *testing.T) {
	t.Parallel()
	// Distinctive broker credentials, so the test can prove they never leak
	// into an error.
	const brokerSecret, brokerToken = "BROKER-SECRET-KEY-0123456789", "BROKER-SESSION-TOKEN-0123456789"
	withBrokerCreds := func(cfg aws.Config) aws.Config {
		cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: brokerSecret, SessionToken: brokerToken}, nil
		})
		return cfg
	}

	tests := []struct {
		name        string
		cfg         func(t *testing.T) aws.Config
		opts        []func(*sts.Options)
		timeout     time.Duration
		wantCode    string
		wantMessage string // a substring
		wantStatus  int
		wantTimeout bool
		wantAPI     bool
	}{
		{
			// Sanitising makes this refusal unreachable through Request, so the
			// SDK's own middleware hook lengthens the name after sanitising: the
			// error is moto's real answer, decoded by the real SDK.
			name:        "STS refusing the input is an upstream error with AWS's code and message",
			cfg:         func(t *testing.T) aws.Config { return moto.Start(t).AWSConfig() },
			opts:        []func(*sts.Options){overlongSessionName},
			wantCode:    "ValidationError",
			wantMessage: "at 'roleSessionName' failed to satisfy constraint",
			wantStatus:  400,
			wantAPI:     true,
		},
		{
			// moto's authentication errors use an error shape the Go SDK does
			// not read (botocore does), so only the status survives.
			name:        "STS refusing the broker's own credentials is an upstream error with the HTTP status",
			cfg:         func(t *testing.T) aws.Config { return moto.Start(t, moto.WithIAMAuthentication()).AWSConfig() },
			wantMessage: "HTTP 403 with a response the AWS SDK could not read",
			wantStatus:  403,
			wantAPI:     true,
		},
		{
			name:        "nothing listening is an upstream error naming the refused connection",
			cfg:         func(t *testing.T) aws.Config { return endpointConfig(closedPort(t)) },
			wantMessage: "connection refused",
		},
		{
			name:        "a server that accepts but never answers runs into the deadline",
			cfg:         func(t *testing.T) aws.Config { return endpointConfig(silentServer(t)) },
			timeout:     300 * time.Millisecond,
			wantMessage: "deadline",
			wantTimeout: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			minter := awssts.NewFromConfig(withBrokerCreds(tt.cfg(t)), tt.opts...)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			creds, err := minter.AssumeRole(ctx, awssts.Request{RoleARN: roleARN, Duration: time.Hour, SessionName: "s1"})
			var upstream *awssts.UpstreamError
			if !errors.As(err, &upstream) {
				t.Fatalf("AssumeRole = %v, %v; want an *UpstreamError", creds, err)
			}
			if creds != nil {
				t.Errorf("AssumeRole returned credentials alongside an error: %v", creds)
			}
			if upstream.Op != "AssumeRole" || upstream.Code != tt.wantCode || !strings.Contains(upstream.Message, tt.wantMessage) {
				t.Errorf("UpstreamError = {Op:%q Code:%q Message:%q}, want Op AssumeRole, Code %q, Message containing %q",
					upstream.Op, upstream.Code, upstream.Message, tt.wantCode, tt.wantMessage)
			}
			if upstream.StatusCode != tt.wantStatus {
				t.Errorf("StatusCode = %d, want %d", upstream.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 0 && upstream.RequestID == "" {
				t.Errorf("RequestID is empty though STS answered")
			}
			if upstream.Timeout() != tt.wantTimeout {
				t.Errorf("Timeout() = %v, want %v", upstream.Timeout(), tt.wantTimeout)
			}
			var apiErr smithy.APIError
			if errors.As(err, &apiErr) != tt.wantAPI {
				t.Errorf("errors.As(err, smithy.APIError) = %v, want %v", !tt.wantAPI, tt.wantAPI)
			}
			text := err.Error()
			if !strings.HasPrefix(text, "sts AssumeRole: ") || strings.ContainsAny(text, "\r\n") {
				t.Errorf("error text %q is not one line starting with the operation", text)
			}
			for _, secret := range []string{brokerSecret, brokerToken} {
				if strings.Contains(text, secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
					t.Errorf("error text reveals a broker credential: %s", text)
				}
			}
			t.Logf("error text: %s", text)
		})
	}
}

// overlongSessionName replaces the sanitised session name with one STS
// refuses, after AssumeRole has built its input.
func overlongSessionName(o *sts.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("OverlongSessionName",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if p, ok := in.Parameters.(*sts.AssumeRoleInput); ok {
					p.RoleSessionName = aws.String(strings.Repeat("x", 65))
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// endpointConfig is an SDK config for an STS at url that fails fast.
func endpointConfig(url string) aws.Config {
	return aws.Config{
		Region:           moto.Region,
		BaseEndpoint:     aws.String(url),
		RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: moto.AccessKeyID, SecretAccessKey: moto.SecretAccessKey}, nil
		}),
	}
}

// closedPort is the URL of a loopback port that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return url
}

// silentServer accepts connections, reads what it is sent and never answers:
// a hung STS or proxy.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return "http://" + l.Addr().String()
}

type callerIdentityOutput struct {
	UserID  string `json:"UserId"`
	Account string `json:"Account"`
	Arn     string `json:"Arn"`
}

// callerIdentity runs the real aws CLI's get-caller-identity against the
// moto server with env (KEY=VALUE pairs, later ones winning) on top of an
// environment cleared of every AWS_ variable of this machine.
func callerIdentity(t *testing.T, server *moto.Server, env []string, args ...string) callerIdentityOutput {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("aws CLI is not on PATH (CI=true, so this is a failure): %v", err)
		}
		t.Skipf("aws CLI is not on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"sts", "get-caller-identity", "--endpoint-url", server.URL, "--region", moto.Region, "--output", "json"}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var identity callerIdentityOutput
	if err := json.Unmarshal(out, &identity); err != nil {
		t.Fatalf("aws sts get-caller-identity printed %q: %v", out, err)
	}
	return identity
}
