package actions_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
)

func TestGitHubActionRunsOnNode24WithAPostStep(t *testing.T) {
	_, meta := loadAction(t)
	if meta.Runs.Using != "node24" || meta.Runs.Main != "dist/index.js" || meta.Runs.Post != "dist/post/index.js" {
		t.Errorf("runs = %+v, want node24 with main dist/index.js and post dist/post/index.js", meta.Runs)
	}
}

func TestGitHubActionPostStepClearsWhatItExported(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	j := newJob(t, runner)
	r := j.action(map[string]string{"url": e.broker.URL, "policy": "gh-deploy", "aws-region": "eu-west-1"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	if len(r.state) != 1 || r.state["ferry"] == "" {
		t.Fatalf("the main step saved state %v, want one ferry entry", r.state)
	}
	var st struct {
		Env         []string
		Credentials []struct {
			Policy    string `json:"policy"`
			RequestID string `json:"request_id"`
		}
	}
	if err := json.Unmarshal([]byte(r.state["ferry"]), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Credentials) != 1 || st.Credentials[0].RequestID != r.outputs["request-id"] {
		t.Errorf("saved credentials %+v, want the step's request %s", st.Credentials, r.outputs["request-id"])
	}
	for _, secret := range []string{r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"]} {
		if strings.Contains(r.state["ferry"], secret) {
			t.Error("the saved state holds a secret")
		}
	}

	p := j.post(r)
	if p.code != 0 {
		t.Fatalf("the post step failed:\n%s", p)
	}
	want := []string{"AWS_ACCESS_KEY_ID", "AWS_CREDENTIAL_EXPIRATION", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
	var cleared []string
	for k, v := range p.env {
		if v != "" {
			t.Errorf("the post step set %s to a value", k)
		}
		cleared = append(cleared, k)
	}
	slices.Sort(cleared)
	if !slices.Equal(cleared, want) {
		t.Errorf("the post step cleared %v, want %v", cleared, want)
	}
	// What the steps after the post step see.
	for _, k := range want {
		if j.exported[k] != "" {
			t.Errorf("%s is still set for later steps", k)
		}
	}
	if !strings.Contains(p.stdout, r.outputs["request-id"]) || !strings.Contains(p.stdout, "expires by itself") {
		t.Errorf("the post step does not name the credential it leaves to expire:\n%s", p)
	}

	// A main step that failed saved nothing, and its post step says so.
	bad := runAction(t, runner, map[string]string{"url": e.broker.URL, "policy": "no-such-policy"})
	if bad.code == 0 || len(bad.state) != 0 {
		t.Fatalf("a refused main step exited %d and saved %v", bad.code, bad.state)
	}
	p = newJob(t, runner).post(bad)
	if p.code != 0 || !strings.Contains(p.stdout, "nothing to release or clean up") || len(p.env) != 0 {
		t.Errorf("the post step of a failed main step:\n%s", p)
	}
}

func TestGitHubActionMasksTheAccountID(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	for _, mask := range []bool{false, true} {
		in := map[string]string{"url": e.broker.URL, "policy": "gh-deploy"}
		if mask {
			in["mask-aws-account-id"] = "true"
		}
		r := runAction(t, runner, in)
		if r.code != 0 {
			t.Fatalf("the action failed:\n%s", r)
		}
		if r.outputs["aws-account-id"] != "123456789012" {
			t.Errorf("output aws-account-id = %q", r.outputs["aws-account-id"])
		}
		lines := strings.Split(r.stdout, "\n")
		masked := slices.Index(lines, "::add-mask::123456789012")
		summary := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "Ferry: policy ") })
		switch {
		case !mask && masked >= 0:
			t.Error("the account id was masked without mask-aws-account-id")
		case mask && (masked < 0 || masked > summary):
			t.Errorf("with mask-aws-account-id the account id is not masked before the summary (which names the role):\n%s", r)
		}
	}
}

// A broker answer with every character that configure-aws-credentials'
// special-characters-workaround retries to avoid. Ferry hands secrets on
// through heredoc env-file commands and JSON, so none needs avoiding.
const oddSecret = `wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLE/KEY+==%25"'\`

func TestGitHubActionSecretsWithSpecialCharactersRoundTrip(t *testing.T) {
	e := newEnv(t)
	runner := startRunnerTokenEndpoint(t, e.gh, "github-environment-production")
	session := "IQoJb3JpZ2luX2Vj+/wEaCXVz//ZWFzdC0x=Ik+cwRQ=="
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"policy": "gh-deploy", "request_id": "01JODDCHARACTERS", "expires_at": exp,
			"aws": map[string]any{"access_key_id": "ASIAODDCHARACTERS", "secret_access_key": oddSecret,
				"session_token": session, "expiration": exp, "role_arn": "arn:aws:iam::123456789012:role/x"},
		})
	}))
	t.Cleanup(fake.Close)

	// Into the environment of later steps, through GITHUB_ENV.
	r := runAction(t, runner, map[string]string{"url": fake.URL, "policy": "gh-deploy"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	if r.env["AWS_SECRET_ACCESS_KEY"] != oddSecret || r.env["AWS_SESSION_TOKEN"] != session {
		t.Errorf("the secrets did not survive GITHUB_ENV unchanged")
	}
	checkMasked(t, r, oddSecret, session)

	// Into an SDK, through the profile's cache and credential_process JSON.
	j := newJob(t, runner)
	j.awkwardTemp()
	r = j.action(map[string]string{"url": fake.URL, "policy": "gh-deploy", "aws-profile": "odd"})
	if r.code != 0 {
		t.Fatalf("the action failed:\n%s", r)
	}
	for _, kv := range j.stepEnv() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", j.dir+"/none")
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatalf("the SDK could not read the profile: %v", err)
	}
	if creds.SecretAccessKey != oddSecret || creds.SessionToken != session || creds.Expires.UTC().Format(time.RFC3339) != exp {
		t.Errorf("the SDK got back a different credential from the credential_process")
	}
}
