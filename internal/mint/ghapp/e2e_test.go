package ghapp_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/githubfake"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// ferryBin is built once, by the first end-to-end test that needs it,
// into binDir, which TestMain removes.
var (
	binDir   string
	ferryBin = sync.OnceValues(func() (string, error) {
		var err error
		if binDir, err = os.MkdirTemp("", "ferry-ghapp-e2e-"); err != nil {
			return "", err
		}
		return ferryproc.Build(binDir)
	})
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	bin, err := ferryBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// The policies the broker under test serves: contents: read on the job's
// own repository, and the same on an owner the App is not installed on.
var e2ePolicies = map[string]string{
	"checkout.yaml": `
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
grant:
  github:
    permissions: {contents: read}
`,
	"elsewhere.yaml": `
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
grant:
  github:
    owner: nobody
    repositories: [tools]
    permissions: {contents: read}
`,
}

type e2e struct {
	srv       *ferryproc.Server
	gh        *githubfake.Server
	issuer    *devissuer.Issuer
	auditPath string
}

// startBroker runs `ferry serve` with github_app pointed at a fake GitHub
// (or with no github_app at all, when app is false).
func startBroker(t *testing.T, app bool) *e2e {
	t.Helper()
	bin := binary(t)
	ghIssuer, glIssuer := issuers.Start(t)
	dir := t.TempDir()
	for name, body := range e2ePolicies {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := &e2e{gh: startFake(t), issuer: ghIssuer, auditPath: filepath.Join(t.TempDir(), "audit.log")}
	cfg := ferryproc.Config(t, dir, ghIssuer.URL(), glIssuer.URL(), e.auditPath)
	if app {
		key := filepath.Join(t.TempDir(), "github-app.pem")
		if err := os.WriteFile(key, pemKey(), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("github_app:\n  app_id: %d\n  private_key: %s\n  api_url: %s\n", appID, key, e.gh.URL)
	}
	e.srv = ferryproc.Serve(t, bin, cfg, nil)
	return e
}

func pemKey() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey())})
}

type exchangeAnswer struct {
	status     int
	retryAfter string
	Policy     string       `json:"policy"`
	RequestID  string       `json:"request_id"`
	Error      string       `json:"error"`
	Desc       string       `json:"error_description"`
	GitHub     *ghappAnswer `json:"github"`
}

type ghappAnswer struct {
	Token        string            `json:"token"`
	ExpiresAt    string            `json:"expires_at"`
	Repositories []string          `json:"repositories"`
	Permissions  map[string]string `json:"permissions"`
}

func (e *e2e) exchange(t *testing.T, policy, token, duration string) exchangeAnswer {
	t.Helper()
	body := map[string]string{"policy": policy, "token": token}
	if duration != "" {
		body["duration"] = duration
	}
	data, _ := json.Marshal(body)
	resp, err := http.Post(e.srv.URL+"/v1/exchange", "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := exchangeAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("exchange answered %d %q: %v", resp.StatusCode, raw, err)
	}
	return a
}

func TestServeMintsAGitHubTokenScopedToThePolicy(t *testing.T) {
	e := startBroker(t, true)
	tok := issuers.Sign(t, e.issuer, "github-push-main", nil)

	a := e.exchange(t, "checkout", tok, "")
	if a.status != 200 || a.GitHub == nil {
		t.Fatalf("exchange: %+v\n%s", a, e.srv.Stderr())
	}
	g := a.GitHub
	if !strings.HasPrefix(g.Token, "ghs_") || !reflect.DeepEqual(g.Repositories, []string{"acme/app"}) ||
		!reflect.DeepEqual(g.Permissions, map[string]string{"contents": "read"}) || g.ExpiresAt == "" {
		t.Errorf("github answer = %+v", g)
	}
	// At GitHub: a token for that one repository, reading contents.
	at, ok := e.gh.Token(g.Token)
	if !ok || !reflect.DeepEqual(at.Repositories, []string{"app"}) || !reflect.DeepEqual(at.Permissions, map[string]string{"contents": "read"}) {
		t.Errorf("token at GitHub = %+v", at)
	}
	if r := call(t, e.gh.URL+"/installation/repositories", g.Token); !strings.Contains(r, `"full_name":"acme/app"`) || !strings.Contains(r, `"total_count":1`) {
		t.Errorf("the token's repositories: %s", r)
	}

	// GitHub fixes the lifetime: a request may not ask for one.
	tok2 := issuers.Sign(t, e.issuer, "github-push-main", nil)
	if d := e.exchange(t, "checkout", tok2, "10m"); d.status != 400 || d.Error != "invalid_request" || !strings.Contains(d.Desc, "whose lifetime the provider fixes") {
		t.Errorf("a duration asked for: %+v", d)
	}

	// The pipeline's way: ferry exchange exports it as GH_TOKEN for later
	// steps, masked first.
	githubEnv := filepath.Join(t.TempDir(), "github_env")
	cmd := exec.Command(binary(t), "exchange", "--url", e.srv.URL, "--policy", "checkout", "--format", "github",
		"--token-file", issuers.WriteToken(t, e.issuer, "github-push-main", nil))
	cmd.Env = append(os.Environ(), "GITHUB_ENV="+githubEnv, "RUNNER_TEMP="+filepath.Dir(githubEnv))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ferry exchange: %v\n%s", err, out)
	}
	exported := strings.Split(readFile(t, githubEnv), "\n")
	if len(exported) < 3 || !strings.HasPrefix(exported[0], "GH_TOKEN<<") || !strings.HasPrefix(exported[1], "ghs_") ||
		!strings.Contains(string(out), "::add-mask::"+exported[1]) {
		t.Errorf("GITHUB_ENV %q, output %q", exported, out)
	}
	if at, ok := e.gh.Token(exported[1]); !ok || !reflect.DeepEqual(at.Repositories, []string{"app"}) {
		t.Errorf("the exported token at GitHub: %+v", at)
	}

	// The job's last step: ferry release finds what ferry exchange left in
	// the job's temporary directory and deletes the token at GitHub.
	rel := exec.Command(binary(t), "release", "--url", e.srv.URL)
	rel.Env = append(os.Environ(), "RUNNER_TEMP="+filepath.Dir(githubEnv))
	if out, err := rel.CombinedOutput(); err != nil {
		t.Fatalf("ferry release: %v\n%s", err, out)
	}
	if at, _ := e.gh.Token(exported[1]); !at.Revoked {
		t.Error("ferry release left the token live at GitHub")
	}

	e.srv.Stop(t)
	audit := readFile(t, e.auditPath)
	var rec struct {
		Decision   string
		Credential struct {
			Type, ID string
			Scope    []string
		}
	}
	if err := json.Unmarshal([]byte(strings.SplitN(audit, "\n", 2)[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Decision != "allow" || rec.Credential.Type != "github" || !strings.HasPrefix(rec.Credential.ID, "sha256:") || len(rec.Credential.ID) != len("sha256:")+16 ||
		!reflect.DeepEqual(rec.Credential.Scope, []string{"contents:read"}) {
		t.Errorf("audit record: %+v", rec)
	}
	if strings.Contains(audit+e.srv.Stderr(), g.Token) || strings.Contains(audit+e.srv.Stderr(), "PRIVATE KEY") {
		t.Error("the GitHub token or the App key reached the audit log or the server's log")
	}
}

func TestServeWhenGitHubRefusesOrFails(t *testing.T) {
	e := startBroker(t, true)

	// GitHub down: 502 with GitHub's own words, and the job's token is not
	// spent, so the same token works once GitHub is back.
	e.gh.Fail(&githubfake.Failure{Status: http.StatusServiceUnavailable, Message: "GitHub is temporarily unavailable"})
	tok := issuers.Sign(t, e.issuer, "github-push-main", nil)
	a := e.exchange(t, "checkout", tok, "")
	if a.status != 502 || a.Error != "upstream_error" || a.Desc != "GitHub failed: 503: GitHub is temporarily unavailable (gave up after 3 attempts)" || a.retryAfter == "" {
		t.Errorf("GitHub down: %+v", a)
	}
	if strings.Contains(a.Desc, "127.0.0.1") {
		t.Errorf("the 502 names an address: %q", a.Desc)
	}
	e.gh.Fail(nil)
	if b := e.exchange(t, "checkout", tok, ""); b.status != 200 || b.GitHub == nil {
		t.Errorf("the same CI token once GitHub is back: %+v", b)
	}

	// The App not installed on the policy's owner: 502 naming the owner.
	c := e.exchange(t, "elsewhere", issuers.Sign(t, e.issuer, "github-push-main", nil), "")
	if c.status != 502 || c.Error != "upstream_error" || !strings.Contains(c.Desc, "the GitHub App is not installed on nobody") {
		t.Errorf("not installed: %+v", c)
	}
}

func TestServeWithoutAGitHubAppRefusesGitHubGrants(t *testing.T) {
	e := startBroker(t, false)
	a := e.exchange(t, "checkout", issuers.Sign(t, e.issuer, "github-push-main", nil), "")
	if a.status != 503 || a.Error != "unavailable" || !strings.Contains(a.Desc, "no github minter configured") {
		t.Errorf("exchange: %+v", a)
	}
	if len(e.gh.Requests()) != 0 {
		t.Error("GitHub was called")
	}
}

func call(t *testing.T, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
