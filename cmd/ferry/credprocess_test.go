package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/client"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

// auditDecisions counts the allow and deny records of an audit log.
func auditDecisions(t *testing.T, path string) (allows, denies int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var rec struct{ Decision string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		switch rec.Decision {
		case "allow":
			allows++
		case "deny":
			denies++
		}
	}
	return allows, denies
}

// ageCache rewrites the cache so its credential, obtained lifetime ago,
// has left to live: the expiry a test controls, instead of waiting.
func ageCache(t *testing.T, path string, lifetime, left time.Duration) {
	t.Helper()
	e, err := client.ReadCache(path)
	if err != nil || e == nil {
		t.Fatalf("read cache: %v, %v", e, err)
	}
	now := time.Now()
	e.ObtainedAt = now.Add(left - lifetime)
	e.Credential.Expiration = now.Add(left).UTC().Format(time.RFC3339)
	if err := client.WriteCache(path, e); err != nil {
		t.Fatal(err)
	}
}

func TestExchangeAWSProfileRefreshesWithoutReplayingAGitLabToken(t *testing.T) {
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
	tok1, err := gl.Sign(mustSample(t, "gitlab-protected-deploy"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config")
	cache := filepath.Join(dir, "ferry-deploy.cache.json")
	job := append(sts.Env(), "GITLAB_CI=true", "FERRY_ID_TOKEN="+tok1, "AWS_CONFIG_FILE="+cfgFile,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "ACTIONS_ID_TOKEN_REQUEST_URL=",
		"TMPDIR="+dir, "CI_JOB_ID=77", "RUNNER_TEMP=")
	releaseDir, err := client.ReleaseDir(func(k string) string { return map[string]string{"TMPDIR": dir, "CI_JOB_ID": "77"}[k] })
	if err != nil {
		t.Fatal(err)
	}

	r := runBin(t, job, "exchange", "--url", srv.URL, "--policy", "gitlab-deploy", "--aws-profile", "deploy")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "into profile deploy") {
		t.Fatalf("--aws-profile: exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	for _, p := range []string{cfgFile, cache} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want a 0600 file", p, err)
		}
	}
	cfg := readFile(t, cfgFile)
	if !strings.Contains(cfg, "[profile deploy]\n# ferry: policy gitlab-deploy\ncredential_process = "+ferryBin+" exchange --url") ||
		!strings.Contains(cfg, "--format credential-process --cache "+cache) {
		t.Errorf("the profile:\n%s", cfg)
	}

	// Several aws commands: the cache answers, the token is spent once.
	for i := 0; i < 3; i++ {
		if arn := callerARN(t, append(job, "AWS_PROFILE=deploy")); !strings.Contains(arn, ":assumed-role/gitlab-deploy/") {
			t.Errorf("command %d ran as %s", i, arn)
		}
	}
	if a, d := auditDecisions(t, auditPath); a != 1 || d != 0 {
		t.Fatalf("audit after 3 commands: %d allows, %d denies; want 1, 0", a, d)
	}

	// Inside the refresh margin with the job's only token spent: the
	// cached credential is handed back, and the token is not sent again.
	ageCache(t, cache, 30*time.Minute, 5*time.Minute)
	process := []string{"exchange", "--url", srv.URL, "--policy", "gitlab-deploy", "--format", "credential-process", "--cache", cache}
	r = runBin(t, job, process...)
	if r.code != 0 || !strings.Contains(r.stderr, "handing back the cached credential") || !strings.Contains(r.stderr, "declare FERRY_ID_TOKEN_2") {
		t.Errorf("a due refresh with no unspent token: exit %d\n%s", r.code, r.stderr)
	}
	if a, d := auditDecisions(t, auditPath); a != 1 || d != 0 {
		t.Errorf("audit: %d allows, %d denies; a spent token must never reach the broker again", a, d)
	}

	// A second id_tokens entry is the refresh.
	tok2, err := gl.Sign(mustSample(t, "gitlab-protected-deploy"))
	if err != nil {
		t.Fatal(err)
	}
	r = runBin(t, append(job, "FERRY_ID_TOKEN_2="+tok2), process...)
	var cred client.ProcessCredential
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &cred) != nil || cred.Version != 1 || cred.SessionToken == "" {
		t.Fatalf("a refresh with FERRY_ID_TOKEN_2: exit %d\n%s", r.code, r.stderr)
	}
	if exp, _ := time.Parse(time.RFC3339, cred.Expiration); time.Until(exp) < 25*time.Minute {
		t.Errorf("the refreshed credential expires at %s, want a new 30-minute one", cred.Expiration)
	}
	if a, d := auditDecisions(t, auditPath); a != 2 || d != 0 {
		t.Errorf("audit after the refresh: %d allows, %d denies; want 2, 0", a, d)
	}
	// The profile's first credential and its refresh are both left for
	// `ferry release` at the job's end.
	if files, err := client.PendingReleases(releaseDir); err != nil || len(files) != 2 {
		t.Errorf("release files after the refresh: %v (err %v), want the first credential's and the refresh's", files, err)
	}

	// Expired, and every token spent: a clear failure, still no replay.
	ageCache(t, cache, 30*time.Minute, -time.Minute)
	r = runBin(t, append(job, "FERRY_ID_TOKEN_2="+tok2), process...)
	if r.code != 1 || !strings.Contains(r.stderr, "every ID token of this job was already exchanged") {
		t.Errorf("expired with every token spent: exit %d\n%s", r.code, r.stderr)
	}
	if a, d := auditDecisions(t, auditPath); a != 2 || d != 0 {
		t.Errorf("audit: %d allows, %d denies; want 2, 0", a, d)
	}
	for _, secret := range []string{tok1, tok2, cred.SecretAccessKey, cred.SessionToken} {
		if strings.Contains(readFile(t, auditPath)+srv.Stderr()+cfg, secret) {
			t.Errorf("a secret reached the audit log, the server log or the AWS config: %.10s…", secret)
		}
	}
}

func TestExchangeCacheAndProfileUsageErrorsSpendNothing(t *testing.T) {
	gh, gl := startIssuers(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	srv := startServe(t, brokerConfig(t, gh, gl, auditPath), nil)
	tok, err := gl.Sign(mustSample(t, "gitlab-protected-deploy"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	taken := filepath.Join(dir, "taken")
	if err := os.WriteFile(taken, []byte("[profile deploy]\nregion = eu-west-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	job := []string{"GITLAB_CI=true", "FERRY_ID_TOKEN=" + tok, "ACTIONS_ID_TOKEN_REQUEST_URL="}
	base := []string{"exchange", "--url", srv.URL, "--policy", "gitlab-deploy"}
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"--cache without credential-process", nil, []string{"--format", "env", "--cache", filepath.Join(dir, "c")}, 2, "--cache is for --format credential-process"},
		{"--aws-profile without AWS_CONFIG_FILE", []string{"AWS_CONFIG_FILE="}, []string{"--aws-profile", "deploy"}, 2, "AWS_CONFIG_FILE, which is not set"},
		{"--aws-profile with --format", []string{"AWS_CONFIG_FILE=" + filepath.Join(dir, "c")}, []string{"--aws-profile", "deploy", "--format", "json"}, 2, "leave out --format"},
		{"a bad profile name", []string{"AWS_CONFIG_FILE=" + filepath.Join(dir, "c")}, []string{"--aws-profile", "de ploy"}, 2, "must be letters"},
		{"a cached exchange from stdin", nil, []string{"--format", "credential-process", "--cache", filepath.Join(dir, "c"), "--token-file", "-"}, 2, "not -"},
		{"--cache with --aws-profile is the profile's cache", []string{"AWS_CONFIG_FILE="}, []string{"--aws-profile", "deploy", "--cache", filepath.Join(dir, "c")}, 2, "AWS_CONFIG_FILE, which is not set"},
		{"a profile Ferry did not write", []string{"AWS_CONFIG_FILE=" + taken}, []string{"--aws-profile", "deploy"}, 1, "Ferry did not write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, append(job, tt.env...), append(base, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", r.code, tt.code, tt.want, r.stderr)
			}
		})
	}
	if data, _ := os.ReadFile(auditPath); len(strings.TrimSpace(string(data))) != 0 {
		t.Errorf("a usage error reached the broker:\n%s", data)
	}
	if data := readFile(t, taken); data != "[profile deploy]\nregion = eu-west-1\n" {
		t.Errorf("the foreign profile was changed:\n%s", data)
	}
}
