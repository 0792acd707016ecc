package actions_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/client"
	"github.com/ferry-broker/ferry/internal/testsupport/githubfake"
)

// jobVar is the value of one of the job's variables as the runner set it.
func (r gitlabRun) jobVar(name string) string {
	for _, kv := range r.envv {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// releaseDir is where the job's release files are: the directory
// `ferry exchange` uses on GitLab.
func (r gitlabRun) releaseDir() string {
	return filepath.Join(r.jobVar("TMPDIR"), "ferry-release-"+strconv.Itoa(os.Getuid()), "job-"+r.jobVar("CI_JOB_ID"))
}

// releaseFiles reads what the before_script left for the after_script,
// with the reader `ferry release` uses, and checks the directory is
// private and outside the project.
func releaseFiles(t *testing.T, r gitlabRun) []*client.ReleaseFile {
	t.Helper()
	dir := r.releaseDir()
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("release directory %s: %v (mode %v), want a 0700 directory", dir, err, st)
	}
	if strings.HasPrefix(dir, r.jobVar("CI_PROJECT_DIR")) {
		t.Errorf("release directory %s is inside the project", dir)
	}
	paths, err := client.PendingReleases(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*client.ReleaseFile
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("release file %s: %v, want mode 0600", p, err)
		}
		rf, err := client.ReadRelease(p)
		if err != nil {
			t.Fatalf("ferry release could not read what the job left: %v", err)
		}
		out = append(out, rf)
	}
	return out
}

// gone fails unless path no longer exists.
func gone(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s %s is still there after the after_script (%v)", what, path, err)
	}
}

func TestGitLabComponentReleasesAtJobEnd(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, shell, client, json, via string
		path                           []string
	}{
		{"the ferry CLI under bash", "bash", "ferry", "", "ferry release: request ", []string{filepath.Dir(e.ferry)}},
		{"curl and jq under bash", "bash", "curl", "jq", "(curl+jq)", nil},
		{"curl and sed under bash", "bash", "curl", "sed", "(curl+sed)", nil},
		{"curl and sed under dash", "dash", "curl", "sed", "(curl+sed)", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.json == "jq" {
				requireTool(t, "jq")
			}
			b := e.startBrokerVia(t, e.sts.URL)
			hidden := renderFerry(t, map[string]any{"url": b.URL, "client": c.client,
				"policies": "gl-deploy aws-profile=prod\ngl-artifacts env-prefix=ARTIFACTS_\n"})
			job := userJob(hidden, "script: ['test -n \"$ARTIFACTS_FERRY_TOKEN\"']\n")
			var extra []string
			if c.json != "" {
				extra = append(extra, "FERRY_JSON="+c.json)
			}
			r := e.runGitLabJob(t, c.shell, job, c.path, extra...)
			if r.code != 0 {
				t.Fatalf("the job failed:\n%s", r)
			}
			grants := map[string]string{}
			for _, rec := range b.records(t) {
				if rec.Decision == "allow" {
					grants[rec.Policy] = rec.RequestID
				}
			}
			if len(grants) != 2 {
				t.Fatalf("grants %v, want gl-deploy and gl-artifacts", grants)
			}
			// One file a credential, in the format ferry release reads.
			files := releaseFiles(t, r)
			var releaseTokens []string
			for _, f := range files {
				if grants[f.Policy] != f.RequestID || f.URL != b.URL || f.Token != "" || f.ExpiresAt.IsZero() {
					t.Errorf("release file for %s: request %s (want %s), url %s, token set %t, expires %v",
						f.Policy, f.RequestID, grants[f.Policy], f.URL, f.Token != "", f.ExpiresAt)
				}
				releaseTokens = append(releaseTokens, f.ReleaseToken)
			}
			if len(files) != 2 {
				t.Fatalf("%d release files, want 2", len(files))
			}
			tok := r.env["ARTIFACTS_FERRY_TOKEN"]
			if !introspect(t, b.URL, tok) {
				t.Fatal("the job's Ferry token introspects inactive before the after_script")
			}
			// The after_script's shell has the job's variables only.
			for _, kv := range r.envv {
				if strings.HasPrefix(kv, "ARTIFACTS_FERRY_TOKEN=") || strings.HasPrefix(kv, "AWS_CONFIG_FILE=") {
					t.Fatalf("the after_script would inherit %s from the first shell", kv[:strings.Index(kv, "=")])
				}
			}

			a := runAfterScript(t, c.shell, r)
			if a.code != 0 || strings.Contains(a.stderr, "warning") {
				t.Fatalf("after_script: exit %d\nstdout:\n%s\nstderr:\n%s", a.code, redact(a.stdout, releaseTokens...), redact(a.stderr, releaseTokens...))
			}
			for policy, id := range grants {
				recs := b.releasesOf(t, id)
				if len(recs) != 1 || recs[0].Released == nil || recs[0].Policy != policy || recs[0].Released.Revoked != (policy == "gl-artifacts") {
					t.Errorf("release records of %s: %+v, want one (revoked only for the Ferry token)", policy, recs)
				}
				if !strings.Contains(a.stdout, id) {
					t.Errorf("the after_script does not name request %s:\n%s", id, a.stdout)
				}
			}
			if introspect(t, b.URL, tok) {
				t.Error("the released Ferry token still introspects active")
			}
			if !strings.Contains(a.stdout, c.via) {
				t.Errorf("the after_script did not release with %q:\n%s", c.via, a.stdout)
			}
			gone(t, "the release directory", r.releaseDir())
			gone(t, "the job-private AWS directory", filepath.Dir(r.env["AWS_CONFIG_FILE"]))
			checkQuiet(t, jobRun{result: a}, append(releaseTokens, tok, r.tokens[0])...)
		})
	}
}

func TestGitLabAfterScriptWarnsWhenTheBrokerIsDown(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ client, want string }{
		{"curl", "Ferry: warning: could not release request %s (policy gl-artifacts): cannot reach the broker: "},
		{"ferry", "Ferry: warning: ferry release could not release every credential"},
	} {
		t.Run(c.client, func(t *testing.T) {
			b := e.startBroker(t, "")
			hidden := renderFerry(t, map[string]any{"url": b.URL, "client": c.client, "policy": "gl-artifacts", "max_attempts": 2})
			r := e.runGitLabJob(t, "bash", userJob(hidden, "script: [true]\n"), []string{filepath.Dir(e.ferry)}, "FERRY_JSON=sed")
			if r.code != 0 {
				t.Fatalf("the job failed:\n%s", r)
			}
			files := releaseFiles(t, r)
			if len(files) != 1 {
				t.Fatalf("%d release files", len(files))
			}
			b.Stop(t)

			a := runAfterScript(t, "bash", r)
			if a.code != 0 {
				t.Errorf("the after_script exited %d with the broker down", a.code)
			}
			want := c.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, files[0].RequestID)
			}
			if !strings.Contains(a.stderr, want) || !strings.Contains(a.stderr, files[0].RequestID) {
				t.Errorf("the after_script does not warn which request it could not release:\nstdout:\n%s\nstderr:\n%s", a.stdout, a.stderr)
			}
			if c.client == "curl" && (!strings.Contains(a.stderr, "retrying in 1s (attempt 2 of 2)") || strings.Contains(a.stderr, "attempt 3")) {
				t.Errorf("max_attempts 2: want one retry:\n%s", a.stderr)
			}
			// Nothing will retry it: the file, which holds the release
			// token, goes with the job.
			gone(t, "the release directory", r.releaseDir())
			checkQuiet(t, jobRun{result: a}, files[0].ReleaseToken, r.env["FERRY_TOKEN"])
		})
	}
}

func TestGitLabComponentReleaseFalseLeavesTheCredentials(t *testing.T) {
	e := newEnv(t)
	b := e.startBrokerVia(t, e.sts.URL)
	hidden := renderFerry(t, map[string]any{"url": b.URL, "client": "curl", "policy": "gl-artifacts", "release": "false"})
	r := e.runGitLabJob(t, "bash", userJob(hidden, "script: [true]\n"), nil, "FERRY_JSON=sed")
	if r.code != 0 {
		t.Fatalf("the job failed:\n%s", r)
	}
	a := runAfterScript(t, "bash", r)
	if a.code != 0 || !strings.Contains(a.stdout, "FERRY_RELEASE is false") {
		t.Errorf("after_script: exit %d\n%s%s", a.code, a.stdout, a.stderr)
	}
	for _, rec := range b.records(t) {
		if rec.Decision == "release" {
			t.Errorf("release: 'false', yet the broker recorded a release of %s", rec.RequestID)
		}
	}
	if !introspect(t, b.URL, r.env["FERRY_TOKEN"]) {
		t.Error("release: 'false', yet the token was revoked")
	}
	gone(t, "the release directory", r.releaseDir())
}

// templateJob is the older template's hidden job .ferry.
func templateJob(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "actions", "gitlab", "ferry.gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	job, ok := cfg[".ferry"].(map[string]any)
	if !ok {
		t.Fatal("ferry.gitlab-ci.yml has no .ferry job")
	}
	return job
}

func TestGitLabTemplateDeletesAGitHubTokenAtJobEnd(t *testing.T) {
	e := newEnv(t)
	for _, parser := range []string{"sed", "jq"} {
		t.Run(parser, func(t *testing.T) {
			if parser == "jq" {
				requireTool(t, "jq")
			}
			b, gh := e.startGitHubAppBroker(t)
			job := userJob(templateJob(t), fmt.Sprintf(`
variables:
  FERRY_URL: %s
  FERRY_POLICY: gl-github
  FERRY_CLIENT: curl
  FERRY_JSON: %s
script: ['test -n "$GH_TOKEN"']
`, b.URL, parser))
			r := e.runGitLabJob(t, "bash", job, nil)
			if r.code != 0 {
				t.Fatalf("the job failed:\n%s", r)
			}
			tok := r.env["GH_TOKEN"]
			at, ok := gh.Token(tok)
			if !strings.HasPrefix(tok, "ghs_") || !ok || at.Revoked || !reflect.DeepEqual(at.Repositories, []string{"app"}) {
				t.Fatalf("GH_TOKEN is a ghs_ token %t, live at GitHub for app %t", strings.HasPrefix(tok, "ghs_"), ok && !at.Revoked)
			}
			if !strings.Contains(r.stdout, `Ferry: policy "gl-github" granted; exported GH_TOKEN, valid until`) {
				t.Errorf("no summary:\n%s", r)
			}
			// GitHub deletes a token only when shown it: the file carries it.
			files := releaseFiles(t, r)
			if len(files) != 1 || files[0].Token != tok || files[0].Policy != "gl-github" {
				t.Fatalf("release files: %d, the first carries the GitHub token: %t", len(files), len(files) > 0 && files[0].Token == tok)
			}

			a := runAfterScript(t, "bash", r)
			if a.code != 0 || strings.Contains(a.stderr, "warning") || !strings.Contains(a.stdout, "released; it no longer works") {
				t.Fatalf("after_script: exit %d\nstdout:\n%s\nstderr:\n%s", a.code, redact(a.stdout, tok), redact(a.stderr, tok))
			}
			if at, _ := gh.Token(tok); !at.Revoked {
				t.Error("the after_script left the token live at GitHub")
			}
			deletes := slices.DeleteFunc(gh.Requests(), func(q githubfake.Request) bool { return q.Method != http.MethodDelete })
			if len(deletes) != 1 || deletes[0].Path != "/installation/token" || deletes[0].Auth != "token" {
				t.Errorf("DELETE requests at GitHub: %+v", deletes)
			}
			if recs := b.releasesOf(t, files[0].RequestID); len(recs) != 1 || !recs[0].Released.Revoked {
				t.Errorf("release records: %+v, want one, revoked", recs)
			}
			checkQuiet(t, jobRun{result: a}, tok, files[0].ReleaseToken)
			checkQuiet(t, r.jobRun, tok, files[0].ReleaseToken)
		})
	}
}
