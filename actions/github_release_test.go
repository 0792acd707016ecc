package actions_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/githubfake"
)

// The GitHub App the brokers of these tests act as, and its key (RSA
// generation is slow: one for the package).
const ghAppID = 123456

var ghAppKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// startGitHubAppBroker runs the real binary with github_app pointed at an
// in-process fake GitHub on which the App is installed on acme.
func (e *env) startGitHubAppBroker(t *testing.T) (auditedBroker, *githubfake.Server) {
	t.Helper()
	gh := githubfake.Start(t, ghAppID, &ghAppKey().PublicKey)
	gh.Install("acme", []string{"app", "infra"}, map[string]string{"contents": "write", "metadata": "read"})
	key := filepath.Join(t.TempDir(), "github-app.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(ghAppKey())})
	if err := os.WriteFile(key, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("github_app:\n  app_id: %d\n  private_key: %s\n  api_url: %s\n", ghAppID, key, gh.URL)
	return e.startBrokerWith(t, e.sts.URL, extra), gh
}

// stateRelease is what the main step keeps in its state for the post
// step to release one credential.
type stateRelease struct {
	RequestID    string `json:"request_id"`
	ReleaseToken string `json:"release_token"`
	Token        string `json:"token"`
}

func savedReleases(t *testing.T, r actionRun) []stateRelease {
	t.Helper()
	var st struct {
		Releases []stateRelease `json:"releases"`
	}
	if err := json.Unmarshal([]byte(r.state["ferry"]), &st); err != nil {
		t.Fatalf("the main step's state: %v", err)
	}
	return st.Releases
}

// releasesOf are the release records of the grant requestID.
func (b auditedBroker) releasesOf(t *testing.T, requestID string) []auditRecord {
	t.Helper()
	var out []auditRecord
	for _, r := range b.records(t) {
		if r.Decision == "release" && r.RequestID == requestID {
			out = append(out, r)
		}
	}
	return out
}

// introspect asks the broker (RFC 7662) whether a Ferry-signed token is
// still good.
func introspect(t *testing.T, brokerURL, token string) bool {
	t.Helper()
	resp, err := http.PostForm(brokerURL+"/v1/introspect", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Active *bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Active == nil {
		t.Fatalf("introspect answered %d %s", resp.StatusCode, body)
	}
	return *out.Active
}

// checkNotPrinted asserts the secrets reach the log only as ::add-mask::
// commands, which the runner swallows.
func checkNotPrinted(t *testing.T, what string, r result, secrets ...string) {
	t.Helper()
	for i, sec := range secrets {
		if sec == "" {
			t.Errorf("%s: secret %d is empty", what, i)
			continue
		}
		for n, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, sec) && !strings.HasPrefix(l, "::add-mask::") {
				t.Errorf("%s: secret %d appears unmasked on stdout line %d", what, i, n+1)
			}
		}
		if strings.Contains(r.stderr, sec) {
			t.Errorf("%s: secret %d appears on stderr", what, i)
		}
	}
}

func TestGitHubActionPostStepDeletesTheGitHubToken(t *testing.T) {
	e := newEnv(t)
	b, gh := e.startGitHubAppBroker(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-push-main")
	j := newJob(t, runner)

	r := j.action(map[string]string{"url": b.URL, "policy": "gh-checkout"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	tok := r.outputs["github-token"]
	if !strings.HasPrefix(tok, "ghs_") || r.env["GH_TOKEN"] != tok || r.outputs["repositories"] != "acme/app" {
		t.Fatalf("outputs github-token %t ghs_, GH_TOKEN exported %t, repositories %q", strings.HasPrefix(tok, "ghs_"), r.env["GH_TOKEN"] == tok, r.outputs["repositories"])
	}
	at, ok := gh.Token(tok)
	if !ok || !reflect.DeepEqual(at.Repositories, []string{"app"}) || !reflect.DeepEqual(at.Permissions, map[string]string{"contents": "read"}) || at.Revoked {
		t.Fatalf("the token at GitHub: %+v (found %t), want one live token for app with contents: read", at, ok)
	}

	// What release needs is in the step's state, masked, and nowhere else.
	rel := savedReleases(t, r)
	if len(rel) != 1 || rel[0].RequestID != r.outputs["request-id"] || rel[0].Token != tok || len(rel[0].ReleaseToken) < 22 {
		t.Fatalf("saved releases %d (request %t, token %t), want the step's one with its release token and the GitHub token", len(rel),
			len(rel) > 0 && rel[0].RequestID == r.outputs["request-id"], len(rel) > 0 && rel[0].Token == tok)
	}
	checkMasked(t, r, tok, rel[0].ReleaseToken)
	for name, v := range r.outputs {
		if strings.Contains(v, rel[0].ReleaseToken) {
			t.Errorf("output %s holds the release token", name)
		}
	}
	for name, v := range r.env {
		if strings.Contains(v, rel[0].ReleaseToken) {
			t.Errorf("exported %s holds the release token", name)
		}
	}

	// The post step, as the runner runs it: the state back as STATE_ferry.
	p := j.post(r)
	if p.code != 0 || strings.Contains(p.stdout, "::warning::") {
		t.Fatalf("the post step:\n%s", p)
	}
	if at, _ := gh.Token(tok); !at.Revoked {
		t.Error("the post step left the token live at GitHub")
	}
	var deletes []githubfake.Request
	for _, req := range gh.Requests() {
		if req.Method == http.MethodDelete {
			deletes = append(deletes, req)
		}
	}
	if len(deletes) != 1 || deletes[0].Path != "/installation/token" || deletes[0].Auth != "token" || deletes[0].Status != http.StatusNoContent {
		t.Errorf("DELETE requests at GitHub = %+v, want one DELETE /installation/token with the token, answered 204", deletes)
	}
	if out := ghCall(t, gh.URL+"/installation/repositories", tok); !strings.Contains(out, "Bad credentials") {
		t.Errorf("the released token still reads the repositories: %s", out)
	}
	recs := b.releasesOf(t, r.outputs["request-id"])
	if len(recs) != 1 || recs[0].Released == nil || !recs[0].Released.Revoked || recs[0].Policy != "gh-checkout" {
		t.Errorf("the audit log's release records for the grant: %+v, want one, revoked", recs)
	}
	if !strings.Contains(p.stdout, `Ferry: released the github credential of policy "gh-checkout" (request `+r.outputs["request-id"]) ||
		!strings.Contains(p.stdout, "it no longer works") {
		t.Errorf("the post step does not say it released the token:\n%s", p)
	}
	if v, ok := p.env["GH_TOKEN"]; !ok || v != "" {
		t.Errorf("after the release the post step left GH_TOKEN as %q (set: %t), want it cleared", v, ok)
	}
	checkNotPrinted(t, "post step", p.result, tok, rel[0].ReleaseToken)
	if logs := b.Stderr(); strings.Contains(logs, tok) || strings.Contains(logs, rel[0].ReleaseToken) {
		t.Error("the GitHub token or the release token reached the broker's log")
	}
}

func ghCall(t *testing.T, u, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func TestGitHubActionPostStepRevokesAFerryToken(t *testing.T) {
	e := newEnv(t)
	b := e.startBrokerVia(t, e.sts.URL)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-push-main")

	j := newJob(t, runner)
	r := j.action(map[string]string{"url": b.URL, "policy": "gh-artifacts"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	tok := r.outputs["token"]
	if !introspect(t, b.URL, tok) {
		t.Fatal("the step's token introspects inactive before any release")
	}
	p := j.post(r)
	if p.code != 0 || strings.Contains(p.stdout, "::warning::") {
		t.Fatalf("the post step:\n%s", p)
	}
	if introspect(t, b.URL, tok) {
		t.Error("the released token still introspects active")
	}
	if recs := b.releasesOf(t, r.outputs["request-id"]); len(recs) != 1 || !recs[0].Released.Revoked {
		t.Errorf("release records %+v, want one, revoked", recs)
	}
	if v, ok := p.env["FERRY_TOKEN"]; !ok || v != "" {
		t.Errorf("FERRY_TOKEN after the post step: %q (set: %t)", v, ok)
	}

	// release: false opts out: the token stays good, the variables go.
	j = newJob(t, runner)
	r = j.action(map[string]string{"url": b.URL, "policy": "gh-artifacts", "release": "false"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	if rel := savedReleases(t, r); len(rel) != 0 {
		t.Errorf("with release: false the step kept %d release tokens", len(rel))
	}
	p = j.post(r)
	if p.code != 0 || !strings.Contains(p.stdout, "input release is false") || !strings.Contains(p.stdout, "expires by itself") {
		t.Errorf("the post step with release: false:\n%s", p)
	}
	if !introspect(t, b.URL, r.outputs["token"]) {
		t.Error("with release: false the token was revoked")
	}
	if recs := b.releasesOf(t, r.outputs["request-id"]); len(recs) != 0 {
		t.Errorf("with release: false the broker recorded %d releases", len(recs))
	}
	if v, ok := p.env["FERRY_TOKEN"]; !ok || v != "" {
		t.Error("with release: false the post step did not clear FERRY_TOKEN")
	}
}

func TestGitHubActionPostStepWarnsWhenTheBrokerIsDown(t *testing.T) {
	e := newEnv(t)
	b := e.startBroker(t, "")
	runner := startRunnerTokenEndpoint(t, e.gh, "github-push-main")
	j := newJob(t, runner)
	r := j.action(map[string]string{"url": b.URL, "policy": "gh-artifacts", "max-attempts": "2"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	rel := savedReleases(t, r)
	b.Stop(t)

	p := j.post(r)
	if p.code != 0 {
		t.Fatalf("a release against a broker that is down failed the post step:\n%s", p)
	}
	id := r.outputs["request-id"]
	want := `::warning::Ferry: could not release the token credential of policy "gh-artifacts" (request ` + id + `, environment): cannot reach the broker: `
	if !strings.Contains(p.stdout, want) || !strings.Contains(p.stdout, "expires by itself at "+r.outputs["expiration"]) {
		t.Errorf("the post step does not warn which request it could not release and why:\n%s", p)
	}
	// max-attempts 2: one more try after a second.
	if n := strings.Count(p.stdout, "retrying in 1s (attempt 2 of 2)"); n != 1 || strings.Contains(p.stdout, "attempt 3") {
		t.Errorf("retries: %d, want exactly one:\n%s", n, p)
	}
	if v, ok := p.env["FERRY_TOKEN"]; !ok || v != "" {
		t.Error("a failed release kept the post step from clearing FERRY_TOKEN")
	}
	if len(rel) != 1 {
		t.Fatalf("saved releases %d", len(rel))
	}
	checkNotPrinted(t, "post step", p.result, r.outputs["token"], rel[0].ReleaseToken)
}

func TestGitHubActionPostStepReleasesRefreshedCredentials(t *testing.T) {
	requireTool(t, "aws")
	e := newEnv(t)
	clock := startSTSClock(t, e.sts.URL)
	b := e.startBrokerVia(t, clock.URL)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	j := newJob(t, runner)
	j.extra = awsClientEnv(t, e.sts.URL)

	// The step's credential runs out two seconds after STS mints it; the
	// aws CLI after that makes the profile's credential_process refresh.
	clock.expireNext(2 * time.Second)
	r := j.action(map[string]string{"url": b.URL, "policy": "gh-deploy", "aws-profile": "deploy", "aws-region": "us-east-1"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	exp, err := time.Parse(time.RFC3339, r.outputs["expiration"])
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, exp.Add(200*time.Millisecond))
	if arns := callerARNs(t, j, 1); !allContain(arns, ":assumed-role/ferry-action-deploy/") {
		t.Fatalf("the aws CLI ran as %v", arns)
	}
	grants := b.grants(t, "gh-deploy")
	if len(grants) != 2 || grants[0].RequestID != r.outputs["request-id"] {
		t.Fatalf("the audit log has %d grants, want the step's and one refresh", len(grants))
	}
	refresh := grants[1].RequestID
	// The refresh's release token is in the profile's 0600 cache only.
	var entry struct {
		History []struct {
			RequestID    string `json:"request_id"`
			ReleaseToken string `json:"release_token"`
		} `json:"history"`
	}
	cacheFile := filepath.Join(filepath.Dir(r.env["AWS_CONFIG_FILE"]), "deploy.cache.json")
	checkPrivateFile(t, j, cacheFile)
	data, err := os.ReadFile(cacheFile)
	if err != nil || json.Unmarshal(data, &entry) != nil || len(entry.History) != 2 || entry.History[1].RequestID != refresh || entry.History[1].ReleaseToken == "" {
		t.Fatalf("the cache's history (err %v) does not hold the refresh's release token", err)
	}
	refreshToken := entry.History[1].ReleaseToken

	p := j.post(r)
	if p.code != 0 || strings.Contains(p.stdout, "::warning::") {
		t.Fatalf("the post step:\n%s", p)
	}
	// Both released: the step's (expired by now: released, nothing to
	// end) and the refresh's.
	first, second := b.releasesOf(t, grants[0].RequestID), b.releasesOf(t, refresh)
	if len(first) != 1 || !first[0].Released.Expired {
		t.Errorf("release records of the step's credential: %+v, want one, for an expired credential", first)
	}
	if len(second) != 1 || second[0].Released.Expired || second[0].Policy != "gh-deploy" {
		t.Errorf("release records of the refresh: %+v, want one, before its expiry", second)
	}
	if !strings.Contains(p.stdout, "(request "+refresh+", a refresh)") {
		t.Errorf("the post step does not name the refresh it released:\n%s", p)
	}
	// Its credential_process could not mask it (stdout is the SDK's): the
	// post step does, before it prints anything.
	lines := strings.Split(p.stdout, "\n")
	if len(lines) == 0 || !strings.HasPrefix(p.stdout, "::add-mask::") || !strings.Contains(p.stdout, "::add-mask::"+refreshToken+"\n") {
		t.Error("the post step did not mask the refresh's release token first")
	}
	checkNotPrinted(t, "post step", p.result, refreshToken)
	if left, _ := filepath.Glob(filepath.Join(j.temp, "ferry", "*")); len(left) != 0 {
		t.Errorf("the post step left %v in RUNNER_TEMP", left)
	}
}

func TestGitHubActionReleasesWhatAFailedStepGot(t *testing.T) {
	e := newEnv(t)
	b := e.startBrokerVia(t, e.sts.URL)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-push-main")
	// The first policy grants, the second is refused: the step fails and
	// hands nothing out, and no post step will know of the first grant.
	r := runAction(t, runner, map[string]string{"url": b.URL, "policies": "gh-artifacts env-prefix=A_\nno-such-policy env-prefix=B_"})
	if r.code == 0 || !strings.Contains(r.stdout, "::error::Ferry: access_denied: ") || len(r.env) != 0 || len(r.state) != 0 {
		t.Fatalf("want a failed step that exported and saved nothing:\n%s", r)
	}
	grants := b.grants(t, "gh-artifacts")
	if len(grants) != 1 {
		t.Fatalf("%d grants of gh-artifacts", len(grants))
	}
	if recs := b.releasesOf(t, grants[0].RequestID); len(recs) != 1 || !recs[0].Released.Revoked {
		t.Errorf("release records of the unused grant: %+v, want one, revoked", recs)
	}
	if !strings.Contains(r.stdout, `Ferry: released the token credential of policy "gh-artifacts" (request `+grants[0].RequestID+", not handed out)") {
		t.Errorf("the step does not say it released the unused grant:\n%s", r)
	}
}
