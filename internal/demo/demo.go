// Package demo runs the whole Ferry flow on one machine with no cloud
// account: a local OIDC issuer standing in for GitHub Actions and GitLab,
// a real broker over loopback HTTP, allowed and refused exchanges, and the
// audit log they leave.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/broker"
	"github.com/ferry-broker/ferry/internal/client"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/urlcheck"
	"github.com/ferry-broker/ferry/trustpolicies"
)

// Options configure a demo run.
type Options struct {
	Out io.Writer
	// PoliciesDir is the policy directory; empty uses ./trustpolicies when
	// it exists, else the copies built into the binary.
	PoliciesDir string
	// Getenv reads the environment (AWS_ENDPOINT_URL decides whether the AWS
	// grant is shown against a real STS).
	Getenv func(string) string
	Logger *slog.Logger
}

// Run performs the demo. It returns an error if any step did not behave as
// the demo says it should, so it doubles as a smoke test.
func Run(ctx context.Context, o Options) (err error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &printer{w: o.Out}
	work, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(work)

	policies, where, err := policyDir(o.PoliciesDir, work)
	if err != nil {
		return err
	}
	gh, err := devissuer.Start(devissuer.Options{Flavor: devissuer.GitHub})
	if err != nil {
		return fmt.Errorf("demo: start GitHub-style issuer: %w", err)
	}
	defer gh.Close()
	gl, err := devissuer.Start(devissuer.Options{Flavor: devissuer.GitLab})
	if err != nil {
		return fmt.Errorf("demo: start GitLab-style issuer: %w", err)
	}
	defer gl.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: listen: %w", err)
	}
	brokerURL := "http://" + ln.Addr().String()
	auditPath := filepath.Join(work, "audit.log")
	cfg := &config.Config{
		Listen:   ln.Addr().String(),
		Policies: policies,
		Issuers: []config.Issuer{
			{Name: "github", Issuer: gh.URL(), Audiences: []string{"ferry"}},
			{Name: "gitlab", Issuer: gl.URL(), Audiences: []string{"ferry"}},
		},
		Audit:    config.Audit{Path: auditPath},
		Replay:   config.Replay{Store: "memory"},
		Token:    config.Token{Issuer: brokerURL},
		LogLevel: "warn",
	}
	devKey, err := tokensign.GenerateKey()
	if err != nil {
		return fmt.Errorf("demo: signing key: %w", err)
	}
	signer, err := tokensign.NewSigner(brokerURL, devKey)
	if err != nil {
		return fmt.Errorf("demo: signer: %w", err)
	}
	awsEndpoint := stsEndpoint(o.Getenv)
	if awsEndpoint != "" {
		demoAWSCredentials(awsEndpoint, o.Getenv)
	}
	// The demo signs with a key that lives only for this run, and has no
	// Google credentials to try.
	b, err := broker.New(ctx, cfg, broker.Options{Logger: o.Logger,
		Minters: map[string]grant.Minter{tokensign.KindName: signer, gcpiam.KindName: nil}})
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: start broker: %w", err)
	}
	defer b.Close()
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- b.Serve(srvCtx, ln) }()
	defer func() {
		stop()
		if serr := <-served; serr != nil && err == nil {
			err = serr
		}
	}()

	p.title("Ferry demo: a CI job trades its OIDC token for a credential that lives minutes")
	p.line("GitHub-style issuer  %s  (signs tokens like token.actions.githubusercontent.com)", gh.URL())
	p.line("GitLab-style issuer  %s", gl.URL())
	p.line("broker               %s  (policies from %s, audit log %s)", brokerURL, where, auditPath)
	p.line("a dev ES256 key signs Ferry tokens; it exists only for this run")

	c := &client.Client{BaseURL: brokerURL, Attempts: 1}
	d := &run{p: p, c: c, gh: gh, gl: gl, broker: brokerURL}

	if awsEndpoint != "" {
		if err := d.allowAWS(ctx, awsEndpoint); err != nil {
			return err
		}
	} else {
		p.step("deploy-prod (aws grant)")
		p.line("AWS_ENDPOINT_URL is not set, so there is no STS to mint from and no AWS credentials")
		p.line("are shown (Ferry never fakes them). To see real ones from a local STS:")
		p.line("    moto_server -p 5000 &  AWS_ENDPOINT_URL=http://127.0.0.1:5000 ferry demo")
		p.line("The token grant below runs the same verify → authorize → mint → audit path.")
	}
	p.step("gcp-deploy (gcp grant)")
	p.line("Loaded but not served here: a GCP grant needs Google credentials (ADC or workload")
	p.line("identity federation, see deploy/gcp). The tests mint through the real IAM Credentials")
	p.line("client against an in-process server: go test ./internal/mint/gcpiam ./internal/exchange")
	minted, err := d.allowToken(ctx)
	if err != nil {
		return err
	}
	if err := d.releaseAtJobEnd(ctx, minted); err != nil {
		return err
	}
	if err := d.refusals(ctx); err != nil {
		return err
	}
	return d.showAudit(auditPath)
}

type run struct {
	p      *printer
	c      *client.Client
	gh, gl *devissuer.Issuer
	broker string
}

func (d *run) sign(is *devissuer.Issuer, sample string, edit func(map[string]any)) (string, error) {
	claims, err := devissuer.SampleClaims(sample)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	if edit != nil {
		edit(claims)
	}
	tok, err := is.Sign(claims)
	if err != nil {
		return "", fmt.Errorf("demo: sign %s: %w", sample, err)
	}
	return tok, nil
}

func (d *run) allowAWS(ctx context.Context, endpoint string) error {
	d.p.step("Allowed: acme/app deploys to production from main → policy deploy-prod (aws grant)")
	tok, err := d.sign(d.gh, "github-environment-production", nil)
	if err != nil {
		return err
	}
	res, err := d.c.Exchange(ctx, client.ExchangeRequest{Policy: "deploy-prod", Token: tok})
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && apiErr.Code == "upstream_error" {
		// The policy allowed it and STS said no: that is the broker
		// working, and the rest of the demo still has something to show.
		d.p.refused(apiErr)
		d.p.line("Ferry allowed the request, but the STS at %s refused or failed; no credentials.", endpoint)
		return nil
	}
	if err != nil {
		return fmt.Errorf("demo: deploy-prod should be allowed: %w", err)
	}
	if res.AWS == nil {
		return errors.New("demo: deploy-prod answered without AWS credentials")
	}
	d.p.ok("STS at %s issued session credentials", endpoint)
	d.p.line("access key id      %s", res.AWS.AccessKeyID)
	d.p.line("secret, session    (%d and %d characters, not printed)", len(res.AWS.SecretAccessKey), len(res.AWS.SessionToken))
	d.p.line("assumed role       %s", res.AWS.AssumedRoleARN)
	d.p.line("expires            %s (in %s)", res.ExpiresAt.Format(time.RFC3339), time.Until(res.ExpiresAt).Round(time.Minute))
	return nil
}

func (d *run) allowToken(ctx context.Context) (*client.Result, error) {
	d.p.step("Allowed: acme/app on main → policy ci-artifacts (Ferry-signed token)")
	tok, err := d.sign(d.gh, "github-push-main", nil)
	if err != nil {
		return nil, err
	}
	res, err := d.c.Exchange(ctx, client.ExchangeRequest{Policy: "ci-artifacts", Token: tok})
	if err != nil {
		return nil, fmt.Errorf("demo: ci-artifacts should be allowed: %w", err)
	}
	if res.Token == nil {
		return nil, errors.New("demo: ci-artifacts answered without a token")
	}
	d.p.ok("minted a token for request %s, expiring %s", res.RequestID, res.ExpiresAt.Format(time.RFC3339))

	// Verify it as a relying party would: discovery and JWKS from the broker.
	provider, err := oidc.NewProvider(ctx, d.broker)
	if err != nil {
		return nil, fmt.Errorf("demo: discover the broker's keys: %w", err)
	}
	var audience string
	set, err := parseUnverifiedAudience(res.Token.Token)
	if err != nil {
		return nil, err
	}
	audience = set
	idt, err := provider.Verifier(&oidc.Config{ClientID: audience}).Verify(ctx, res.Token.Token)
	if err != nil {
		return nil, fmt.Errorf("demo: the broker's own token does not verify: %w", err)
	}
	var extra map[string]any
	if err := idt.Claims(&extra); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d.p.ok("verified with go-oidc against %s/.well-known/openid-configuration", d.broker)
	d.p.line("iss %s", idt.Issuer)
	d.p.line("sub %s", idt.Subject)
	d.p.line("aud %s", strings.Join(idt.Audience, ","))
	for _, k := range []string{"repository", "ref", "sha"} {
		if v, ok := extra[k]; ok {
			d.p.line("%-3s %v", k, v)
		}
	}
	return res, nil
}

// releaseAtJobEnd does what the Action's post step and the GitLab
// template's after_script do when the job ends, and shows a relying party
// finding the token dead through introspection.
func (d *run) releaseAtJobEnd(ctx context.Context, minted *client.Result) error {
	d.p.step("The job ends: its post step releases the token (POST /v1/release)")
	active, err := d.introspect(ctx, minted.Token.Token)
	if err != nil {
		return err
	}
	d.p.line("before: /v1/introspect says active=%t", active)
	rel, err := d.c.Release(ctx, client.ReleaseRequest{RequestID: minted.RequestID, ReleaseToken: minted.ReleaseToken})
	if err != nil {
		return fmt.Errorf("demo: release request %s: %w", minted.RequestID, err)
	}
	if !rel.Released || !rel.Revoked {
		return fmt.Errorf("demo: release of request %s answered released=%t revoked=%t: %s", minted.RequestID, rel.Released, rel.Revoked, rel.Detail)
	}
	d.p.ok("request %s released and revoked: %s", rel.RequestID, rel.Detail)
	if active, err = d.introspect(ctx, minted.Token.Token); err != nil {
		return err
	}
	if active {
		return errors.New("demo: a released token still introspects active")
	}
	d.p.line("after:  /v1/introspect says active=%t, minutes before the token's own expiry", active)
	return nil
}

// introspect asks the broker whether a Ferry-signed token is still good,
// as a relying party that honours release does.
func (d *run) introspect(ctx context.Context, token string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.broker+"/v1/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return false, fmt.Errorf("demo: introspect: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("demo: introspect: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("demo: introspect: HTTP %d: %v", resp.StatusCode, err)
	}
	return out.Active, nil
}

func (d *run) refusals(ctx context.Context) error {
	cases := []struct {
		title, policy, sample string
		is                    *devissuer.Issuer
		edit                  func(map[string]any)
		want                  string
	}{
		{"Refused: a run on refs/heads/dev asks for deploy-prod", "deploy-prod", "github-environment-production", d.gh,
			func(c map[string]any) { c["ref"] = "refs/heads/dev" }, "access_denied"},
		{"Refused: a pull_request_target run asks for deploy-prod", "deploy-prod", "github-pull-request-target", d.gh,
			func(c map[string]any) { c["environment"] = "production" }, "access_denied"},
		{"Refused: a GitLab job on an unprotected branch asks for gitlab-deploy", "gitlab-deploy", "gitlab-unprotected-branch", d.gl,
			nil, "access_denied"},
	}
	for _, tc := range cases {
		d.p.step(tc.title)
		tok, err := d.sign(tc.is, tc.sample, tc.edit)
		if err != nil {
			return err
		}
		if err := d.expectRefusal(ctx, tc.policy, tok, tc.want); err != nil {
			return err
		}
	}

	d.p.step("Refused: the same token presented twice (single use)")
	tok, err := d.sign(d.gh, "github-push-main", nil)
	if err != nil {
		return err
	}
	if _, err := d.c.Exchange(ctx, client.ExchangeRequest{Policy: "ci-artifacts", Token: tok}); err != nil {
		return fmt.Errorf("demo: first use should be allowed: %w", err)
	}
	d.p.ok("first use allowed")
	return d.expectRefusal(ctx, "ci-artifacts", tok, "invalid_token")
}

func (d *run) expectRefusal(ctx context.Context, policy, tok, want string) error {
	_, err := d.c.Exchange(ctx, client.ExchangeRequest{Policy: policy, Token: tok})
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != want {
		return fmt.Errorf("demo: expected %s from policy %s, got %v", want, policy, err)
	}
	d.p.refused(apiErr)
	return nil
}

func (d *run) showAudit(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("demo: read audit log: %w", err)
	}
	sum, err := audit.Verify(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("demo: audit chain: %w", err)
	}
	d.p.step(fmt.Sprintf("Audit log: %d records, hash chain intact (ferry audit verify)", sum.Records))
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fmt.Fprintf(d.p.w, "  %s\n", l)
	}
	fmt.Fprintln(d.p.w)
	return nil
}

// policyDir picks the policies: the given dir, ./trustpolicies, or the
// embedded copies written to work.
func policyDir(dir, work string) (path, where string, err error) {
	if dir != "" {
		return dir, dir, nil
	}
	if st, err := os.Stat("trustpolicies"); err == nil && st.IsDir() {
		abs, err := filepath.Abs("trustpolicies")
		if err != nil {
			return "", "", fmt.Errorf("demo: %w", err)
		}
		return abs, "./trustpolicies", nil
	}
	out := filepath.Join(work, "trustpolicies")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", "", fmt.Errorf("demo: %w", err)
	}
	err = fs.WalkDir(trustpolicies.Files, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		data, err := trustpolicies.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, p), data, 0o600)
	})
	if err != nil {
		return "", "", fmt.Errorf("demo: write embedded policies: %w", err)
	}
	return out, "the copies built into ferry", nil
}

func stsEndpoint(getenv func(string) string) string {
	if u := getenv("AWS_ENDPOINT_URL_STS"); u != "" {
		return u
	}
	return getenv("AWS_ENDPOINT_URL")
}

// demoAWSCredentials lets a local STS such as moto_server work with no AWS
// setup: moto accepts any key, and the SDK refuses to call without one. It
// only applies to loopback endpoints, never to a real AWS account.
func demoAWSCredentials(endpoint string, getenv func(string) string) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return
	}
	if !urlcheck.Loopback(u.Hostname()) {
		return
	}
	if getenv("AWS_ACCESS_KEY_ID") == "" && getenv("AWS_PROFILE") == "" {
		os.Setenv("AWS_ACCESS_KEY_ID", "demo")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "demo")
	}
	if getenv("AWS_REGION") == "" && getenv("AWS_DEFAULT_REGION") == "" {
		os.Setenv("AWS_REGION", "us-east-1")
	}
}
