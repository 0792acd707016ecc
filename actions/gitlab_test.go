package actions_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// gitlabScript is the path of the script the template inlines.
func gitlabScript(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "actions", "gitlab", "ferry-credentials.sh")
}

// jobRun is one finished before_script: the process result and the
// environment the job's script would see after it.
type jobRun struct {
	result
	env map[string]string
}

func (r jobRun) String() string {
	var secrets []string
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN", "FERRY_TOKEN", "FERRY_ID_TOKEN"} {
		secrets = append(secrets, r.env[k])
	}
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, redact(r.stdout, secrets...), redact(r.stderr, secrets...))
}

// runJob sources the script in shell the way GitLab's runner runs a
// before_script (bash with errexit and pipefail; sh with errexit), then
// records the environment the job's script would see. vars are the job's
// variables, on top of what GitLab sets for every job.
func runJob(t *testing.T, shell string, pathDirs []string, vars ...string) jobRun {
	t.Helper()
	sh := requireTool(t, shell)
	tmp := t.TempDir()
	envFile := filepath.Join(tmp, "job.env")
	opts := "set -e"
	if shell == "bash" {
		opts = "set -eo pipefail"
	}
	cmd := exec.Command(sh, "-c", opts+`; . "$1"; env > "$2"`, "job", gitlabScript(t), envFile)
	cmd.Dir = tmp
	path := os.Getenv("PATH")
	if len(pathDirs) > 0 {
		path = strings.Join(pathDirs, string(os.PathListSeparator)) + string(os.PathListSeparator) + path
	}
	cmd.Env = append([]string{
		"PATH=" + path,
		"HOME=" + tmp,
		// The job's own temporary space: the release files go there, not
		// into the machine's /tmp.
		"TMPDIR=" + tmp,
		"CI=true",
		"GITLAB_CI=true",
		"CI_SERVER_URL=https://gitlab.example.com",
		"CI_PROJECT_PATH=group/app",
		"CI_PROJECT_ID=4242",
		"CI_PIPELINE_ID=998877",
		"CI_JOB_ID=5566778",
		"CI_JOB_NAME=deploy",
		"CI_COMMIT_REF_NAME=main",
	}, vars...)
	r := jobRun{result: run(t, cmd), env: map[string]string{}}
	if r.code == 0 {
		data, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				r.env[k] = v
			}
		}
	}
	return r
}

// checkQuiet asserts no secret reached the job log.
func checkQuiet(t *testing.T, r jobRun, secrets ...string) {
	t.Helper()
	for i, s := range secrets {
		if s == "" {
			t.Errorf("secret %d is empty", i)
			continue
		}
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Errorf("secret %d reached the job log", i)
		}
	}
}

var awsVars = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION"}

func TestGitLabScriptExportsWorkingAWSCredentials(t *testing.T) {
	e := newEnv(t)
	ferryDir := filepath.Dir(e.ferry)
	cases := []struct {
		name, shell, client string
		path                []string
	}{
		{"curl under bash", "bash", "curl", nil},
		{"curl under dash", "dash", "curl", nil},
		{"the ferry CLI under bash", "bash", "ferry", []string{ferryDir}},
		{"auto picks the CLI on PATH", "dash", "", []string{ferryDir}},
	}
	var names [][]string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := sign(t, e.gl, "gitlab-protected-deploy", nil)
			vars := []string{"FERRY_URL=" + e.broker.URL, "FERRY_POLICY=gl-deploy", "FERRY_DURATION=20m", "FERRY_ID_TOKEN=" + tok}
			if c.client != "" {
				vars = append(vars, "FERRY_CLIENT="+c.client)
			}
			if c.shell == "dash" {
				vars = append(vars, "FERRY_JSON=sed") // jq is the bash case's, where the machine has it
			}
			r := runJob(t, c.shell, c.path, vars...)
			if r.code != 0 {
				t.Fatalf("before_script failed:\n%s", r)
			}
			arn := awsCaller(t, e.sts.URL, r.env["AWS_ACCESS_KEY_ID"], r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"])
			if !strings.Contains(arn, ":assumed-role/ferry-gitlab-deploy/") {
				t.Errorf("the exported credentials are %s, want a session of role ferry-gitlab-deploy", arn)
			}
			expiresWithin(t, "AWS_CREDENTIAL_EXPIRATION", r.env["AWS_CREDENTIAL_EXPIRATION"], 20*time.Minute)
			checkQuiet(t, r, r.env["AWS_ACCESS_KEY_ID"], r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"], tok)
			// The summary says which client ran, so each case proves its path.
			via := "(ferry exchange)"
			if c.client == "curl" {
				via = "valid until "
			}
			if !strings.Contains(r.stdout, `Ferry: policy "gl-deploy" granted; exported AWS_ACCESS_KEY_ID`) || !strings.Contains(r.stdout, via) {
				t.Errorf("no summary line naming %q:\n%s", via, r)
			}
			var got []string
			for k := range r.env {
				if strings.HasPrefix(k, "AWS_") && k != "AWS_REGION" {
					got = append(got, k)
				}
			}
			slices.Sort(got)
			names = append(names, got)
		})
	}
	// Whichever client ran, the job sees the same variables.
	for _, n := range names {
		if want := slices.Sorted(slices.Values(awsVars)); !slices.Equal(n, want) {
			t.Errorf("exported %v, want %v", n, want)
		}
	}
}

func TestGitLabScriptExportsAFerryToken(t *testing.T) {
	e := newEnv(t)
	tok := sign(t, e.gl, "gitlab-protected-deploy", nil)
	r := runJob(t, "bash", nil, "FERRY_URL="+e.broker.URL, "FERRY_POLICY=gl-artifacts", "FERRY_ID_TOKEN="+tok, "FERRY_CLIENT=curl")
	if r.code != 0 {
		t.Fatalf("before_script failed:\n%s", r)
	}
	claims := verifyFerryToken(t, e.broker.URL, r.env["FERRY_TOKEN"])
	if claims["aud"] != "https://artifacts.internal.example" || claims["project_path"] != "group/app" {
		t.Errorf("FERRY_TOKEN claims aud %v, project_path %v", claims["aud"], claims["project_path"])
	}
	checkQuiet(t, r, r.env["FERRY_TOKEN"], tok)
}

func TestGitLabScriptFailsTheJobWithTheBrokersReason(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ client, json string }{{"curl", "jq"}, {"curl", "sed"}, {"ferry", ""}} {
		t.Run(c.client+c.json, func(t *testing.T) {
			if c.json == "jq" {
				requireTool(t, "jq")
			}
			// An unprotected branch: gl-deploy requires ref_protected.
			tok := sign(t, e.gl, "gitlab-unprotected-branch", nil)
			r := runJob(t, "bash", []string{filepath.Dir(e.ferry)},
				"FERRY_URL="+e.broker.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN="+tok, "FERRY_CLIENT="+c.client, "FERRY_JSON="+c.json)
			if r.code == 0 {
				t.Fatalf("a refused exchange let the job go on:\n%s", r)
			}
			// The description quotes the claim; the curl path unescapes it.
			if !strings.Contains(r.stderr, "access_denied") || !strings.Contains(r.stderr, `claim "`) || !strings.Contains(r.stderr, "request_id") {
				t.Errorf("the failure does not carry the broker's code, description and request id:\n%s", r)
			}
			checkQuiet(t, r, tok)
		})
	}
}

func TestGitLabScriptRefusesBadSetups(t *testing.T) {
	e := newEnv(t)
	tok := sign(t, e.gl, "gitlab-protected-deploy", nil)
	tests := []struct {
		name string
		vars []string
		want string
	}{
		{"no id_tokens", []string{"FERRY_URL=" + e.broker.URL, "FERRY_POLICY=gl-deploy"}, "id_tokens"},
		{"no url", []string{"FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok}, "FERRY_URL is not set"},
		{"no policy", []string{"FERRY_URL=" + e.broker.URL, "FERRY_ID_TOKEN=" + tok}, "FERRY_POLICY is not set"},
		{"plain http to a remote host", []string{"FERRY_URL=http://ferry.example.com", "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok}, "must use https"},
		{"credentials in the URL", []string{"FERRY_URL=http://u:p@127.0.0.1:1", "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok}, "must not carry credentials"},
		{"a policy name that would bend the JSON", []string{"FERRY_URL=" + e.broker.URL, `FERRY_POLICY=x","duration":"12h`, "FERRY_ID_TOKEN=" + tok}, "is not a policy name"},
		{"something that is not a JWT", []string{"FERRY_URL=" + e.broker.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=a b"}, "not a JWT"},
		{"an unknown client", []string{"FERRY_URL=" + e.broker.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok, "FERRY_CLIENT=wget"}, "not auto, ferry or curl"},
		{"the CLI asked for but absent", []string{"FERRY_URL=" + e.broker.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok, "FERRY_CLIENT=ferry"}, "no ferry binary"},
		{"an unreachable broker", []string{"FERRY_URL=http://127.0.0.1:1", "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok, "FERRY_CLIENT=curl", "FERRY_MAX_ATTEMPTS=1"}, "cannot reach the broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runJob(t, "bash", nil, tt.vars...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("want a failed job saying %q:\n%s", tt.want, r)
			}
			checkQuiet(t, r, tok)
		})
	}
}

func TestGitLabScriptRetriesWhenRateLimited(t *testing.T) {
	e := newEnv(t)
	b := e.startBroker(t, "rate_limit:\n  per_second: 0.34\n  burst: 1\n")

	exhaustRateLimit(t, b.URL)
	tok := sign(t, e.gl, "gitlab-protected-deploy", nil)
	r := runJob(t, "bash", nil, "FERRY_URL="+b.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN="+tok, "FERRY_CLIENT=curl")
	if r.code != 0 {
		t.Fatalf("the job did not get through a 429:\n%s", r)
	}
	if !strings.Contains(r.stderr, "rate_limited: ") || !strings.Contains(r.stderr, "retrying in 3s") {
		t.Errorf("no retry honouring Retry-After: 3:\n%s", r)
	}
	if r.env["AWS_SESSION_TOKEN"] == "" {
		t.Error("no credentials after the retry")
	}

	exhaustRateLimit(t, b.URL)
	tok = sign(t, e.gl, "gitlab-protected-deploy", nil)
	r = runJob(t, "bash", nil, "FERRY_URL="+b.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN="+tok, "FERRY_CLIENT=curl", "FERRY_MAX_ATTEMPTS=1")
	if r.code == 0 || !strings.Contains(r.stderr, "rate_limited: too many requests") || strings.Contains(r.stderr, "retrying") {
		t.Errorf("FERRY_MAX_ATTEMPTS=1 against a rate-limited broker:\n%s", r)
	}
}

func TestGitLabScriptKeepsSecretsOutOfATracedLog(t *testing.T) {
	e := newEnv(t)
	sh := requireTool(t, "bash")
	tok := sign(t, e.gl, "gitlab-protected-deploy", nil)
	// CI_DEBUG_TRACE runs the job under set -x; the script turns tracing
	// off while credentials are in variables and back on after.
	cmd := exec.Command(sh, "-c", `set -x; . "$1"; case $- in *x*) echo "xtrace restored";; esac`, "job", gitlabScript(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + t.TempDir(), "FERRY_URL=" + e.broker.URL, "FERRY_POLICY=gl-deploy", "FERRY_ID_TOKEN=" + tok, "FERRY_CLIENT=curl"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("traced job failed: %v\n%s", err, redact(out.String()+errb.String(), tok))
	}
	log := out.String() + errb.String()
	if strings.Contains(log, tok) || strings.Contains(log, "AWS_SECRET_ACCESS_KEY=") || strings.Contains(log, "ferry_body=") {
		t.Errorf("the traced log shows the token or a credential")
	}
	if !strings.Contains(out.String(), "xtrace restored") {
		t.Error("tracing was not switched back on")
	}
}

// componentPrefix is what the component's before_script runs before the
// script: its inputs, from its variables, into the script's settings.
const componentPrefix = `FERRY_URL=$FERRY_COMPONENT_URL FERRY_POLICY=$FERRY_COMPONENT_POLICY FERRY_POLICIES=$FERRY_COMPONENT_POLICIES
FERRY_AWS_PROFILE=$FERRY_COMPONENT_AWS_PROFILE FERRY_DURATION=$FERRY_COMPONENT_DURATION
FERRY_CLIENT=$FERRY_COMPONENT_CLIENT FERRY_MAX_ATTEMPTS=$FERRY_COMPONENT_MAX_ATTEMPTS
`

// componentReleasePrefix is the same for the after_script and
// ferry-release.sh.
const componentReleasePrefix = "FERRY_RELEASE=$FERRY_COMPONENT_RELEASE FERRY_CLIENT=$FERRY_COMPONENT_CLIENT FERRY_MAX_ATTEMPTS=$FERRY_COMPONENT_MAX_ATTEMPTS\n"

// gitlabReleaseScript is the path of the script the after_scripts inline.
func gitlabReleaseScript(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "actions", "gitlab", "ferry-release.sh")
}

// rewriteBlock replaces the literal block of `  KEY:\n    - |\n` in a
// template with text, indented as the block is.
func rewriteBlock(data, key, text string) (string, error) {
	marker := "  " + key + ":\n    - |\n"
	head, rest, ok := strings.Cut(data, marker)
	if !ok {
		return "", fmt.Errorf("no %q to rewrite after", marker)
	}
	// The block runs to the first non-blank line indented less than it.
	lines := strings.SplitAfter(rest, "\n")
	end := len(lines)
	for i, l := range lines {
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "      ") {
			end = i
			break
		}
	}
	var b strings.Builder
	b.WriteString(head + marker)
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("      ")
		}
		b.WriteString(line)
	}
	b.WriteString(strings.Join(lines[end:], ""))
	return b.String(), nil
}

// TestGitLabTemplateInlinesTheScript keeps the before_script and
// after_script of the older template and of the component identical to
// ferry-credentials.sh and ferry-release.sh, the files to edit: an include
// brings in YAML only, so both carry the text.
func TestGitLabTemplateInlinesTheScript(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "actions", "gitlab")
	script, err := os.ReadFile(gitlabScript(t))
	if err != nil {
		t.Fatal(err)
	}
	release, err := os.ReadFile(gitlabReleaseScript(t))
	if err != nil {
		t.Fatal(err)
	}
	files := []struct{ path, job, before, after string }{
		{filepath.Join(dir, "ferry.gitlab-ci.yml"), ".ferry", string(script), string(release)},
		{filepath.Join(dir, "templates", "credentials.yml"), ".ferry-credentials", componentPrefix + string(script), componentReleasePrefix + string(release)},
	}
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		// FERRY_UPDATE_TEMPLATE=1 rewrites both blocks from the scripts.
		if os.Getenv("FERRY_UPDATE_TEMPLATE") == "1" {
			text := string(data)
			for key, body := range map[string]string{"before_script": f.before, "after_script": f.after} {
				if text, err = rewriteBlock(text, key, body); err != nil {
					t.Fatalf("%s: %v", f.path, err)
				}
			}
			if err := os.WriteFile(f.path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			data = []byte(text)
		}
		type hiddenJob struct {
			IDTokens map[string]struct {
				Aud any `yaml:"aud"`
			} `yaml:"id_tokens"`
			BeforeScript []string `yaml:"before_script"`
			AfterScript  []string `yaml:"after_script"`
		}
		// The component is two documents (header, configuration); the
		// template one. The job is in the last.
		var docs []map[string]hiddenJob
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc map[string]hiddenJob
			if err := dec.Decode(&doc); err != nil {
				break
			}
			docs = append(docs, doc)
		}
		if len(docs) == 0 {
			t.Fatalf("%s is not YAML GitLab can read", f.path)
		}
		job, ok := docs[len(docs)-1][f.job]
		if !ok {
			t.Fatalf("%s has no hidden job %s", f.path, f.job)
		}
		if _, ok := job.IDTokens["FERRY_ID_TOKEN"]; !ok {
			t.Errorf("%s: %s declares no FERRY_ID_TOKEN id_token", f.path, f.job)
		}
		const update = "edit the script, then run\n  FERRY_UPDATE_TEMPLATE=1 go test ./actions -run TestGitLabTemplateInlinesTheScript"
		if len(job.BeforeScript) != 1 || job.BeforeScript[0] != f.before {
			t.Errorf("%s: %s's before_script is not ferry-credentials.sh verbatim; %s", f.path, f.job, update)
		}
		if len(job.AfterScript) != 1 || job.AfterScript[0] != f.after {
			t.Errorf("%s: %s's after_script is not ferry-release.sh verbatim; %s", f.path, f.job, update)
		}
	}
}
