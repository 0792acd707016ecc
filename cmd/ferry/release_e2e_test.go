package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/ferry-broker/ferry/internal/client"
	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
	"github.com/ferry-broker/ferry/internal/testsupport/redisproc"
)

// releasePolicies are the policies of the release tests: a Ferry token,
// one that lives the shortest a token grant may (1m), and an AWS role
// with revoke_on_release.
var releasePolicies = map[string]string{
	"artifacts.yaml": `
issuer: github
match:
  repository: "acme/*"
  ref: refs/heads/main
grant:
  token:
    audience: https://artifacts.internal.example
    duration: 10m
    claims: [repository, ref]
`,
	"short.yaml": `
issuer: github
match:
  repository: "acme/*"
grant:
  token:
    audience: https://short.internal.example
    duration: 1m
`,
	"deploy-revocable.yaml": `
issuer: github
match:
  repository: acme/app
  ref: refs/heads/main
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/ci/deploy-revocable
    duration: 1h
    session_tags: [repository]
    revoke_on_release: true
`,
}

func writeReleasePolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range releasePolicies {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// job is one CI job's environment: its own temp directory, nothing of the
// machine's CI variables.
type job struct {
	env []string
	tmp string
}

func newJob(t *testing.T) job {
	tmp := t.TempDir()
	return job{tmp: tmp, env: []string{"TMPDIR=" + tmp, "RUNNER_TEMP=", "CI_JOB_ID=", "GITHUB_WORKSPACE=", "CI_PROJECT_DIR=", "CI_BUILDS_DIR=", "FERRY_URL="}}
}

func (j job) releaseDir() string {
	return filepath.Join(j.tmp, "ferry-release-"+strconv.Itoa(os.Getuid()), "local")
}

type exchanged struct {
	RequestID    string    `json:"request_id"`
	ReleaseToken string    `json:"release_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	Token        *struct {
		Token string `json:"token"`
	} `json:"token"`
	AWS *struct {
		AccessKeyID string `json:"access_key_id"`
	} `json:"aws"`
}

// exchange runs `ferry exchange` in the job and returns its answer.
func (j job) exchange(t *testing.T, srv *ferryproc.Server, policy, tokenFile string, extra ...string) exchanged {
	t.Helper()
	r := runBin(t, j.env, append([]string{"exchange", "--url", srv.URL, "--policy", policy, "--token-file", tokenFile}, extra...)...)
	if r.code != 0 {
		t.Fatalf("ferry exchange: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out exchanged
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("ferry exchange output: %v\n%s", err, r.stdout)
	}
	return out
}

// introspect asks a broker about a token, as a resource server would.
func introspect(t *testing.T, brokerURL, token string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(brokerURL+"/v1/introspect", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("introspect: %d %s", resp.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func postRelease(t *testing.T, brokerURL, requestID, releaseToken string) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"request_id": requestID, "release_token": releaseToken})
	resp, err := http.Post(brokerURL+"/v1/release", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestReleaseAtJobEndThroughTheBinary(t *testing.T) {
	t.Parallel()
	gh, gl := startIssuers(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	srv := startServe(t, ferryproc.Config(t, writeReleasePolicies(t), gh.URL(), gl.URL(), auditPath), nil)
	j := newJob(t)

	// 1. ferry exchange leaves a private file for ferry release, and clears
	// the files of credentials that have expired since an earlier one.
	stale, err := client.SaveRelease(j.releaseDir(), srv.URL, &client.Result{RequestID: "01JSTALE", Policy: "artifacts",
		ReleaseToken: "stale-release-token", ExpiresAt: time.Now().Add(-time.Minute)}, "")
	if err != nil {
		t.Fatal(err)
	}
	ciToken := writeToken(t, gh, "github-push-main", nil)
	got := j.exchange(t, srv, "artifacts", ciToken)
	if got.ReleaseToken == "" || got.Token == nil {
		t.Fatalf("exchange answer lacks release_token or token: %+v", got)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the release file of an expired credential is still there: %v", err)
	}
	file := filepath.Join(j.releaseDir(), got.RequestID+".json")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("ferry exchange left no release file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("release file mode %o, want 600", fi.Mode().Perm())
	}
	if strings.Contains(readFile(t, file), got.Token.Token) {
		t.Error("the release file keeps a Ferry token, which release does not need")
	}
	if introspect(t, srv.URL, got.Token.Token)["active"] != true {
		t.Fatal("a fresh token introspects inactive")
	}

	// 2. ferry release ends it, says so, removes the file, prints no secret.
	r := runBin(t, j.env, "release", "--url", srv.URL)
	if r.code != 0 || !strings.Contains(r.stdout, "request "+got.RequestID+" (policy artifacts): released and revoked") {
		t.Fatalf("ferry release: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, secret := range []string{got.ReleaseToken, got.Token.Token} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("ferry release printed a secret (%.8s…)", secret)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the release file is still there: %v", err)
	}
	if active := introspect(t, srv.URL, got.Token.Token); active["active"] != false || len(active) != 1 {
		t.Errorf("after release, introspection = %v, want exactly {active: false}", active)
	}

	// 3. Nothing left: exit 0. A second release is 200 and changes nothing.
	if r := runBin(t, j.env, "release", "--url", srv.URL); r.code != 0 || !strings.Contains(r.stderr, "nothing to release") {
		t.Errorf("ferry release with nothing left: exit %d %s", r.code, r.stderr)
	}
	status, again := postRelease(t, srv.URL, got.RequestID, got.ReleaseToken)
	if status != 200 || again["released"] != true || again["revoked"] != true || !strings.Contains(fmt.Sprint(again["detail"]), "already released") {
		t.Errorf("second release: %d %v", status, again)
	}

	// 4. A wrong release token: 403; ferry release says why, exits 1, and
	// drops the file, which can never work.
	other := j.exchange(t, srv, "artifacts", writeToken(t, gh, "github-push-main", nil))
	if status, body := postRelease(t, srv.URL, other.RequestID, got.ReleaseToken); status != 403 || body["error"] != "access_denied" {
		t.Errorf("wrong release token: %d %v", status, body)
	}
	otherFile := filepath.Join(j.releaseDir(), other.RequestID+".json")
	forged := strings.Replace(readFile(t, otherFile), other.ReleaseToken, got.ReleaseToken, 1)
	if err := os.WriteFile(otherFile, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, j.env, "release", "--url", srv.URL)
	if r.code != 1 || !strings.Contains(r.stderr, "refused: access_denied (HTTP 403)") || strings.Contains(r.stdout+r.stderr, got.ReleaseToken) {
		t.Errorf("ferry release with a wrong token: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(otherFile); !os.IsNotExist(err) {
		t.Errorf("a release file that can never work was kept: %v", err)
	}
	if introspect(t, srv.URL, other.Token.Token)["active"] != true {
		t.Error("a refused release revoked the token")
	}
	if status, _ := postRelease(t, srv.URL, other.RequestID, other.ReleaseToken); status != 200 {
		t.Errorf("the right release token after a wrong one: %d", status)
	}

	// 5. A broker that cannot be reached: exit 1, and the file is kept for
	// a retry.
	third := j.exchange(t, srv, "artifacts", writeToken(t, gh, "github-push-main", nil))
	r = runBin(t, j.env, "release", "--url", closedURL(t))
	if r.code != 1 || !strings.Contains(r.stderr, "request "+third.RequestID) {
		t.Errorf("ferry release to nowhere: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(j.releaseDir(), third.RequestID+".json")); err != nil {
		t.Errorf("the file was not kept for a retry: %v", err)
	}
	// Without --url, each file names its broker.
	if r := runBin(t, j.env, "release"); r.code != 0 {
		t.Errorf("ferry release by the file's URL: exit %d\n%s", r.code, r.stderr)
	}

	// 6. The audit holds each release under its grant's request id, with
	// how long it was held, and the report sets held against granted.
	srv.Stop(t)
	if v := runBin(t, nil, "audit", "verify", auditPath); v.code != 0 || !strings.Contains(v.stdout, "3 allow, 0 deny, 6 release,") {
		t.Fatalf("ferry audit verify: %d %s%s", v.code, v.stdout, v.stderr)
	}
	var released []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, auditPath)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["decision"] == "release" && rec["request_id"] == got.RequestID {
			released = append(released, rec)
		}
	}
	if len(released) != 2 {
		t.Fatalf("%d release records of %s, want the release and its repeat", len(released), got.RequestID)
	}
	rel, _ := released[0]["released"].(map[string]any)
	if rel["revoked"] != true || rel["granted_seconds"] != float64(600) || rel["repeat"] != nil {
		t.Errorf("release record's released = %v", rel)
	}
	if held, ok := rel["held_seconds"].(float64); !ok || held < 0 || held > 60 {
		t.Errorf("held_seconds = %v", rel["held_seconds"])
	}
	if cred, _ := released[0]["credential"].(map[string]any); cred["type"] != "token" || cred["id"] == "" {
		t.Errorf("release record's credential = %v", cred)
	}
	rep := runBin(t, nil, "audit", "report", auditPath)
	if rep.code != 0 {
		t.Fatalf("ferry audit report: %d %s", rep.code, rep.stderr)
	}
	section := rep.stdout[strings.Index(rep.stdout, "Credential lifetimes per policy"):]
	fields := strings.Fields(strings.Split(section, "\n")[2])
	// artifacts: 3 grants, all released early and revoked, held seconds of 10m.
	if len(fields) < 9 || fields[0] != "artifacts" || fields[1] != "3" || fields[2] != "3" || fields[3] != "(3" || fields[8] != "10m" {
		t.Errorf("lifetime row = %q\n%s", fields, rep.stdout)
	}
	if !strings.Contains(rep.stdout, "artifacts: jobs hold a median") || !strings.Contains(rep.stdout, "its duration is too long") {
		t.Errorf("the report does not flag a 10m grant held for seconds:\n%s", rep.stdout)
	}
	for _, secret := range []string{got.ReleaseToken, got.Token.Token, other.ReleaseToken} {
		if strings.Contains(readFile(t, auditPath)+srv.Stderr(), secret) {
			t.Errorf("a secret reached the audit or the broker's log (%.8s…)", secret)
		}
	}
}

// closedURL is a loopback URL that nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

func TestReleaseOfAnExpiredCredentialThroughTheBinary(t *testing.T) {
	t.Parallel()
	gh, gl := startIssuers(t)
	srv := startServe(t, ferryproc.Config(t, writeReleasePolicies(t), gh.URL(), gl.URL(), filepath.Join(t.TempDir(), "audit.log")), nil)
	j := newJob(t)
	got := j.exchange(t, srv, "short", writeToken(t, gh, "github-push-main", nil))
	// The shortest token grant is a minute: wait it out.
	time.Sleep(time.Until(got.ExpiresAt) + time.Second)
	r := runBin(t, j.env, "release", "--url", srv.URL)
	if r.code != 0 || !strings.Contains(r.stdout, "released; it expires by itself") || !strings.Contains(r.stdout, "expired at") {
		t.Errorf("ferry release of an expired token: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestReleaseDeniesTheAWSSessionThroughTheBinary(t *testing.T) {
	t.Parallel()
	gh, gl := startIssuers(t)
	sts := moto.Start(t)
	iamc := iam.NewFromConfig(sts.AWSConfig())
	ctx := context.Background()
	if _, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("deploy-revocable"), Path: aws.String("/ci/"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`)}); err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	srv := startServe(t, ferryproc.Config(t, writeReleasePolicies(t), gh.URL(), gl.URL(), auditPath), sts.Env())
	j := newJob(t)
	got := j.exchange(t, srv, "deploy-revocable", writeToken(t, gh, "github-push-main", nil))
	if got.AWS == nil || got.ReleaseToken == "" {
		t.Fatalf("answer = %+v", got)
	}
	r := runBin(t, j.env, "release", "--url", srv.URL)
	if r.code != 0 || !strings.Contains(r.stdout, "released and revoked") || !strings.Contains(r.stdout, "ferry-request-id="+got.RequestID) {
		t.Fatalf("ferry release: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out, err := iamc.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("deploy-revocable"), PolicyName: aws.String("ferry-released-sessions")})
	if err != nil {
		t.Fatalf("the role has no release policy: %v", err)
	}
	doc := aws.ToString(out.PolicyDocument)
	if d, err := url.PathUnescape(doc); err == nil {
		doc = d
	}
	var policy struct {
		Statement []struct {
			Effect, Action, Resource string
			Condition                map[string]map[string][]string
		}
	}
	if err := json.Unmarshal([]byte(doc), &policy); err != nil || len(policy.Statement) != 1 {
		t.Fatalf("release policy %s: %v", doc, err)
	}
	s := policy.Statement[0]
	if s.Effect != "Deny" || s.Action != "*" || s.Resource != "*" ||
		strings.Join(s.Condition["StringEquals"]["aws:PrincipalTag/ferry-request-id"], ",") != got.RequestID {
		t.Errorf("release statement = %+v", s)
	}
	srv.Stop(t)
	if !strings.Contains(readFile(t, auditPath), `"released":{"revoked":true`) {
		t.Errorf("the audit lacks the revoking release:\n%s", readFile(t, auditPath))
	}
}

func TestReleaseOnOneReplicaIsSeenByAnother(t *testing.T) {
	t.Parallel()
	gh, gl := startIssuers(t)
	redis := redisproc.Start(t)
	dir := writeReleasePolicies(t)
	auditA := filepath.Join(t.TempDir(), "audit.log")
	// One config, one signing key, two brokers: replicas.
	cfg := ferryproc.Config(t, dir, gh.URL(), gl.URL(), auditA) + "replay:\n  store: redis\n  redis_url: " + redis.URL() + "\n"
	a := startServe(t, cfg, nil)
	b := startServe(t, strings.Replace(cfg, auditA, filepath.Join(t.TempDir(), "audit.log"), 1), nil)

	j := newJob(t)
	got := j.exchange(t, a, "artifacts", writeToken(t, gh, "github-push-main", nil))
	if introspect(t, b.URL, got.Token.Token)["active"] != true {
		t.Fatal("replica B does not find A's token active")
	}
	if r := runBin(t, j.env, "release", "--url", a.URL); r.code != 0 {
		t.Fatalf("ferry release on A: exit %d\n%s", r.code, r.stderr)
	}
	if introspect(t, b.URL, got.Token.Token)["active"] != false {
		t.Error("a token released on replica A introspects active on replica B")
	}
	if status, body := postRelease(t, b.URL, got.RequestID, got.ReleaseToken); status != 200 || !strings.Contains(fmt.Sprint(body["detail"]), "already released") {
		t.Errorf("release again on B: %d %v", status, body)
	}
}
