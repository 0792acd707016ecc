package actions_test

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func componentPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "actions", "gitlab", "templates", "credentials.yml")
}

// renderFerry renders the component with inputs and returns its hidden job.
func renderFerry(t *testing.T, inputs map[string]any) map[string]any {
	t.Helper()
	src, err := os.ReadFile(componentPath(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := renderComponent(src, inputs)
	if err != nil {
		t.Fatalf("GitLab would refuse the include: %v", err)
	}
	job, ok := cfg[".ferry-credentials"].(map[string]any)
	if !ok || len(cfg) != 1 {
		t.Fatalf("the component adds %v, want the hidden job .ferry-credentials only", slices.Collect(maps.Keys(cfg)))
	}
	return job
}

func TestGitLabComponentRendersLikeGitLab(t *testing.T) {
	src, err := os.ReadFile(componentPath(t))
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name   string
		inputs map[string]any
		want   string
	}{
		{"no url", map[string]any{"policy": "p"}, "`url` input: required value has not been provided"},
		{"an unknown input", map[string]any{"url": "https://f.example", "polcy": "p"}, "unknown input arguments: polcy"},
		{"a number that is not one", map[string]any{"url": "https://f.example", "max_attempts": "three"}, "`max_attempts` input: provided value is not a number"},
		{"a client not in the options", map[string]any{"url": "https://f.example", "client": "wget"}, "`wget` cannot be used because it is not in the list of allowed options"},
		{"a url a shell could misread", map[string]any{"url": "https://f.example/$(id)"}, "`url` input: provided value does not match required RegEx pattern"},
		{"a url that is not one", map[string]any{"url": "ferry.example.com"}, "`url` input: provided value does not match"},
		{"an empty audience", map[string]any{"url": "https://f.example", "audience": ""}, "`audience` input: provided value does not match"},
		{"a policy that is not a string", map[string]any{"url": "https://f.example", "policy": 7}, "`policy` input: provided value is not a string"},
		{"release as a YAML boolean", map[string]any{"url": "https://f.example", "release": false}, "`release` input: provided value is not a string"},
		{"release neither true nor false", map[string]any{"url": "https://f.example", "release": "no"}, "`no` cannot be used because it is not in the list of allowed options"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderComponent(src, tt.inputs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("render: %v, want an error saying %q", err, tt.want)
			}
		})
	}

	// Only the required input: the defaults fill the rest.
	job := renderFerry(t, map[string]any{"url": "https://ferry.example.com", "policy": "gitlab-deploy"})
	if aud := job["id_tokens"].(map[string]any)["FERRY_ID_TOKEN"].(map[string]any)["aud"]; aud != "ferry" {
		t.Errorf("FERRY_ID_TOKEN aud = %v, want the default ferry", aud)
	}
	vars, err := jobVariables(job)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"FERRY_COMPONENT_AWS_PROFILE=", "FERRY_COMPONENT_CLIENT=auto", "FERRY_COMPONENT_DURATION=",
		"FERRY_COMPONENT_MAX_ATTEMPTS=3", "FERRY_COMPONENT_POLICIES=", "FERRY_COMPONENT_POLICY=gitlab-deploy",
		"FERRY_COMPONENT_RELEASE=true", "FERRY_COMPONENT_URL=https://ferry.example.com"}
	if !slices.Equal(vars, want) {
		t.Errorf("variables %v\nwant %v", vars, want)
	}
	for name, v := range job["variables"].(map[string]any) {
		if h, ok := v.(map[string]any); !ok || h["expand"] != false {
			t.Errorf("variable %s is expanded by GitLab; an input must reach the script as given", name)
		}
	}
	// The inputs never become script text, only variables.
	script, err := os.ReadFile(gitlabScript(t))
	if err != nil {
		t.Fatal(err)
	}
	if bs := scriptLines(job, "before_script"); len(bs) != 1 || bs[0] != componentPrefix+string(script) {
		t.Error("the rendered before_script is not the prefix and ferry-credentials.sh")
	}
	release, err := os.ReadFile(gitlabReleaseScript(t))
	if err != nil {
		t.Fatal(err)
	}
	if as := scriptLines(job, "after_script"); len(as) != 1 || as[0] != componentReleasePrefix+string(release) {
		t.Error("the rendered after_script is not the prefix and ferry-release.sh")
	}

	// Every input is documented and used, and a multi-line list arrives
	// whole.
	var head componentHeader
	if err := yaml.Unmarshal(src, &head); err != nil {
		t.Fatal(err)
	}
	for name, in := range head.Spec.Inputs {
		if in == nil || in.Description == "" {
			t.Errorf("input %s has no description", name)
		}
		if !strings.Contains(string(src), "$[[ inputs."+name+" ]]") {
			t.Errorf("input %s is never used", name)
		}
	}
	list := "a aws-profile=a\nb env-prefix=B_\n"
	job = renderFerry(t, map[string]any{"url": "https://f.example", "policies": list, "audience": "https://ferry.example.com", "max_attempts": 5})
	vars, _ = jobVariables(job)
	if !slices.Contains(vars, "FERRY_COMPONENT_POLICIES="+list) || !slices.Contains(vars, "FERRY_COMPONENT_MAX_ATTEMPTS=5") {
		t.Errorf("variables %q", vars)
	}
	if aud := job["id_tokens"].(map[string]any)["FERRY_ID_TOKEN"].(map[string]any)["aud"]; aud != "https://ferry.example.com" {
		t.Errorf("aud = %v", aud)
	}
}

// gitlabRun is a job the component's hidden job was extended into, run.
type gitlabRun struct {
	jobRun
	tokens []string
	job    map[string]any
	envv   []string
	// dir is the project directory the job ran in.
	dir string
}

// runGitLabJob runs job the way GitLab and its runner do: an ID token for
// each id_tokens entry, signed by the dev GitLab issuer with the aud the
// entry asks for; the job's variables and GitLab's predefined ones; the
// before_script and script in one shell (bash with errexit and pipefail,
// or sh with errexit). after_script is left for runAfterScript.
func (e *env) runGitLabJob(t *testing.T, shell string, job map[string]any, pathDirs []string, extra ...string) gitlabRun {
	t.Helper()
	sh := requireTool(t, shell)
	tmp := t.TempDir()
	path := os.Getenv("PATH")
	if len(pathDirs) > 0 {
		path = strings.Join(pathDirs, string(os.PathListSeparator)) + string(os.PathListSeparator) + path
	}
	envv := []string{
		"PATH=" + path, "HOME=" + tmp, "TMPDIR=" + tmp, "CI=true", "GITLAB_CI=true",
		"CI_SERVER_URL=https://gitlab.example.com", "CI_PROJECT_PATH=group/app", "CI_PROJECT_ID=4242",
		"CI_PROJECT_DIR=" + filepath.Join(tmp, "project"), "CI_PIPELINE_ID=998877", "CI_JOB_ID=5566778",
		"CI_JOB_NAME=deploy", "CI_COMMIT_REF_NAME=main",
	}
	if err := os.Mkdir(filepath.Join(tmp, "project"), 0o700); err != nil {
		t.Fatal(err)
	}
	vars, err := jobVariables(job)
	if err != nil {
		t.Fatal(err)
	}
	envv = append(envv, vars...)
	var tokens []string
	ids, _ := job["id_tokens"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(ids)) {
		aud := ids[name].(map[string]any)["aud"]
		tok := sign(t, e.gl, "gitlab-protected-deploy", func(c map[string]any) { c["aud"] = aud })
		tokens = append(tokens, tok)
		envv = append(envv, name+"="+tok)
	}
	envv = append(envv, extra...)
	envFile := filepath.Join(tmp, "job.env")
	lines := append(scriptLines(job, "before_script"), scriptLines(job, "script")...)
	opts := "set -e"
	if shell == "bash" {
		opts = "set -eo pipefail"
	}
	cmd := exec.Command(sh, "-c", opts+"\n"+strings.Join(lines, "\n")+"\nenv > \"$FERRY_TEST_ENV\"\n")
	cmd.Dir = filepath.Join(tmp, "project")
	cmd.Env = append(envv, "FERRY_TEST_ENV="+envFile)
	r := gitlabRun{jobRun: jobRun{result: run(t, cmd), env: map[string]string{}}, tokens: tokens, job: job, envv: envv, dir: cmd.Dir}
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

// runAfterScript runs the job's after_script in a shell process of its
// own, as the runner does (bash with errexit and pipefail, or sh with
// errexit), in the project directory, with the job's variables and
// nothing of the first shell's.
func runAfterScript(t *testing.T, shell string, r gitlabRun) result {
	t.Helper()
	opts := "set -e"
	if shell == "bash" {
		opts = "set -eo pipefail"
	}
	cmd := exec.Command(requireTool(t, shell), "-c", opts+"\n"+strings.Join(scriptLines(r.job, "after_script"), "\n"))
	cmd.Env = r.envv
	cmd.Dir = r.dir
	return run(t, cmd)
}

// userJob extends the component's hidden job with a job of the user's.
func userJob(hidden map[string]any, own string) map[string]any {
	var job map[string]any
	if err := yaml.Unmarshal([]byte(own), &job); err != nil {
		panic(err)
	}
	return extendJob(hidden, job)
}

func TestGitLabComponentJobGetsAWSCredentials(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, shell, client, json, via string
		path                           []string
	}{
		{"curl and sed under dash", "dash", "curl", "sed", "curl+sed", nil},
		{"curl and jq under bash", "bash", "curl", "jq", "curl+jq", nil},
		{"the ferry CLI under bash", "bash", "ferry", "", "(ferry exchange)", []string{filepath.Dir(e.ferry)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.json == "jq" {
				requireTool(t, "jq")
			}
			hidden := renderFerry(t, map[string]any{"url": e.broker.URL, "policy": "gl-deploy", "duration": "20m", "client": c.client})
			job := userJob(hidden, "script: ['test -n \"$AWS_SESSION_TOKEN\"']\n")
			var extra []string
			if c.json != "" {
				extra = append(extra, "FERRY_JSON="+c.json)
			}
			r := e.runGitLabJob(t, c.shell, job, c.path, extra...)
			if r.code != 0 {
				t.Fatalf("the job failed:\n%s", r)
			}
			arn := awsCaller(t, e.sts.URL, r.env["AWS_ACCESS_KEY_ID"], r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"])
			if !strings.Contains(arn, ":assumed-role/ferry-gitlab-deploy/") {
				t.Errorf("the job's credentials are %s", arn)
			}
			expiresWithin(t, "AWS_CREDENTIAL_EXPIRATION", r.env["AWS_CREDENTIAL_EXPIRATION"], 20*time.Minute)
			if !strings.Contains(r.stdout, `Ferry: policy "gl-deploy" granted; exported AWS_ACCESS_KEY_ID`) || !strings.Contains(r.stdout, c.via) {
				t.Errorf("no summary naming %q:\n%s", c.via, r)
			}
			checkQuiet(t, r.jobRun, append(r.tokens, r.env["AWS_SECRET_ACCESS_KEY"], r.env["AWS_SESSION_TOKEN"])...)
			for k := range r.env {
				if strings.HasPrefix(k, "ferry_") {
					t.Errorf("the script left its variable %s in the job's environment", k)
				}
			}
		})
	}
}

func TestGitLabComponentGivesOneJobSeveralCredentials(t *testing.T) {
	requireTool(t, "aws")
	e := newEnv(t)
	for _, client := range []string{"curl", "ferry"} {
		t.Run(client, func(t *testing.T) {
			b := e.startBrokerVia(t, e.sts.URL)
			hidden := renderFerry(t, map[string]any{"url": b.URL, "client": client, "policies": `
				gl-deploy       aws-profile=prod
				gl-deploy-stage aws-profile=stage duration=20m
				gl-artifacts    env-prefix=ARTIFACTS_
			`})
			r := e.runGitLabJob(t, "bash", userJob(hidden, "script: [aws --version]\n"), []string{filepath.Dir(e.ferry)})
			if r.code != 0 {
				t.Fatalf("the job failed:\n%s", r)
			}
			cfgFile := r.env["AWS_CONFIG_FILE"]
			if st, err := os.Stat(cfgFile); err != nil || st.Mode().Perm() != 0o600 || strings.HasPrefix(cfgFile, r.env["CI_PROJECT_DIR"]) {
				t.Errorf("AWS_CONFIG_FILE %s: %v; want a 0600 file outside the project directory", cfgFile, err)
			}
			if _, ok := r.env["AWS_PROFILE"]; ok {
				t.Error("a list of profiles picked one as AWS_PROFILE")
			}
			// The aws CLI in the job's environment, one profile at a time.
			awsEnv := append(slices.Clone(r.envv), "AWS_CONFIG_FILE="+cfgFile, "AWS_ENDPOINT_URL="+e.sts.URL, "AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
				"AWS_EC2_METADATA_DISABLED=true", "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(t.TempDir(), "none"))
			for profile, role := range map[string]string{"prod": "ferry-gitlab-deploy", "stage": "ferry-gitlab-stage"} {
				cmd := exec.Command("aws", "--profile", profile, "sts", "get-caller-identity", "--query", "Arn", "--output", "text")
				cmd.Env = awsEnv
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), ":assumed-role/"+role+"/") {
					t.Errorf("aws --profile %s: %v\n%s", profile, err, redact(string(out)))
				}
			}
			if claims := verifyFerryToken(t, b.URL, r.env["ARTIFACTS_FERRY_TOKEN"]); claims["aud"] != "https://artifacts.internal.example" {
				t.Errorf("ARTIFACTS_FERRY_TOKEN aud %v", claims["aud"])
			}
			// One token, once per policy.
			var allows []string
			for _, rec := range b.records(t) {
				if rec.Decision != "allow" {
					t.Errorf("audit: %s %s %s", rec.Decision, rec.Error, rec.Rule)
				}
				allows = append(allows, rec.Policy)
			}
			if slices.Sort(allows); !slices.Equal(allows, []string{"gl-artifacts", "gl-deploy", "gl-deploy-stage"}) {
				t.Errorf("grants %v", allows)
			}
			checkQuiet(t, r.jobRun, r.tokens...)

			// The after_script takes the job-private AWS files away.
			if a := runAfterScript(t, "bash", r); a.code != 0 {
				t.Errorf("after_script: exit %d %s", a.code, a.stderr)
			}
			if _, err := os.Stat(filepath.Dir(cfgFile)); !os.IsNotExist(err) {
				t.Errorf("after the after_script %s is still there (%v)", filepath.Dir(cfgFile), err)
			}
		})
	}
}

func TestGitLabComponentRefusesTwoCredentialsInTheSameVariables(t *testing.T) {
	e := newEnv(t)
	b := e.startBrokerVia(t, e.sts.URL)
	tests := []struct{ name, policies, want string }{
		{"two AWS credentials into AWS_*", "gl-deploy\ngl-deploy-stage", `policies "gl-deploy" "gl-deploy-stage" would all export into the same variables`},
		{"one profile twice", "gl-deploy aws-profile=p\ngl-deploy-stage aws-profile=p", `aws-profile "p" appears twice`},
		{"one prefix twice", "gl-deploy env-prefix=A_\ngl-artifacts env-prefix=A_", `env-prefix "A_" appears twice`},
		{"a typo", "gl-deploy aws_profile=p", `line 1 of FERRY_POLICIES: unknown option "aws_profile"`},
		{"policy and policies", "", "give FERRY_POLICY or FERRY_POLICIES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := map[string]any{"url": b.URL, "client": "curl", "policies": tt.policies}
			if tt.policies == "" {
				in["policies"], in["policy"] = "gl-deploy", "gl-artifacts"
			}
			r := e.runGitLabJob(t, "bash", userJob(renderFerry(t, in), "script: ['echo the script ran']\n"), nil)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stdout, "the script ran") {
				t.Errorf("want a failed job saying %q:\n%s", tt.want, r)
			}
		})
	}
	if recs := b.records(t); len(recs) != 0 {
		t.Errorf("the broker saw %d requests; a list that cannot be delivered must not spend the token", len(recs))
	}
}

func TestGitLabComponentRefreshesOnlyWithAnotherIDToken(t *testing.T) {
	requireTool(t, "aws")
	e := newEnv(t)
	clock := startSTSClock(t, e.sts.URL)
	b := e.startBrokerVia(t, clock.URL)
	hidden := renderFerry(t, map[string]any{"url": b.URL, "policy": "gl-deploy", "aws_profile": "deploy", "client": "ferry"})
	// The job's script outlives the before_script's credential, which the
	// test made to expire two seconds after STS minted it.
	script := fmt.Sprintf(`
variables:
  AWS_ENDPOINT_URL: %s
  AWS_REGION: us-east-1
  AWS_DEFAULT_REGION: us-east-1
  AWS_EC2_METADATA_DISABLED: "true"
script:
  - aws sts get-caller-identity --query Arn --output text
  - sleep 3
  - aws sts get-caller-identity --query Arn --output text
  - aws sts get-caller-identity --query Arn --output text
`, e.sts.URL)

	// With one token the refresh cannot happen: the credential is used
	// until it expires, then the job fails saying what to declare, and the
	// spent token never reaches the broker again.
	clock.expireNext(2 * time.Second)
	r := e.runGitLabJob(t, "bash", userJob(hidden, script), []string{filepath.Dir(e.ferry)})
	if r.code == 0 || !strings.Contains(r.stderr, "declare FERRY_ID_TOKEN_2") {
		t.Errorf("one token across an expiry: want a failed job naming FERRY_ID_TOKEN_2:\n%s", r)
	}
	if g, all := b.grants(t, "gl-deploy"), b.records(t); len(g) != 1 || len(all) != 1 {
		t.Errorf("audit: %d grants in %d records, want the one grant and no replay", len(g), len(all))
	}

	// A second id_tokens entry in the user's job is the refresh.
	clock.expireNext(2 * time.Second)
	job := userJob(hidden, script+"id_tokens:\n  FERRY_ID_TOKEN_2:\n    aud: ferry\n")
	r = e.runGitLabJob(t, "bash", job, []string{filepath.Dir(e.ferry)})
	if r.code != 0 {
		t.Fatalf("a job with a second ID token failed across the expiry:\n%s", r)
	}
	if n := strings.Count(r.stdout, ":assumed-role/ferry-gitlab-deploy/"); n != 3 || r.env["AWS_PROFILE"] != "deploy" {
		t.Errorf("%d of 3 aws commands ran as the deploy role (AWS_PROFILE %q):\n%s", n, r.env["AWS_PROFILE"], r)
	}
	if g := b.grants(t, "gl-deploy"); len(g) != 3 {
		t.Errorf("audit has %d grants, want 3: the first job's, and this job's first and refresh", len(g))
	}
	for _, rec := range b.records(t) {
		if rec.Decision != "allow" {
			t.Errorf("audit: %s %s %s — a token was sent twice", rec.Decision, rec.Error, rec.Rule)
		}
	}
	checkQuiet(t, r.jobRun, r.tokens...)
}

// TestGitLabComponentUnderGitlabCILocal runs a pipeline that includes the
// component with inputs through gitlab-ci-local, a third-party
// reimplementation of GitLab's pipeline creation and shell runner. It
// needs `npm ci` in actions/gitlab and rsync, and skips without them.
func TestGitLabComponentUnderGitlabCILocal(t *testing.T) {
	node := requireTool(t, "node")
	glci := filepath.Join(repoRoot(t), "actions", "gitlab", "node_modules", "gitlab-ci-local", "src", "index.js")
	if _, err := os.Stat(glci); err != nil {
		skipUnlessCI(t, "gitlab-ci-local is not installed (cd actions/gitlab && npm ci)")
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		skipUnlessCI(t, "gitlab-ci-local needs rsync")
	}
	requireTool(t, "git")
	e := newEnv(t)
	tok := sign(t, e.gl, "gitlab-protected-deploy", nil)

	repo, tmp := t.TempDir(), t.TempDir()
	src, err := os.ReadFile(componentPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(repo, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "templates", "credentials.yml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	pipeline := func(inputs string) {
		t.Helper()
		ci := fmt.Sprintf(`include:
  - local: templates/credentials.yml
    inputs:
%s
deploy:
  extends: .ferry-credentials
  script:
    - test -n "$AWS_SESSION_TOKEN" && echo "deploy has AWS credentials until $AWS_CREDENTIAL_EXPIRATION"
`, inputs)
		if err := os.WriteFile(filepath.Join(repo, ".gitlab-ci.yml"), []byte(ci), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"init", "-q"}, {"remote", "add", "origin", "https://gitlab.example.com/group/app.git"}, {"add", "-A"},
			{"-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "ci", "--allow-empty"}} {
			cmd := exec.Command("git", args...)
			cmd.Dir = repo
			_ = cmd.Run() // init and remote fail harmlessly the second time
		}
	}
	glciRun := func() result {
		cmd := exec.Command(node, glci, "--shell-executor-no-image", "--variable", "FERRY_ID_TOKEN="+tok, "--variable", "FERRY_JSON=sed", "deploy")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "HOME="+repo, "TMPDIR="+tmp)
		return run(t, cmd)
	}

	pipeline(fmt.Sprintf("      url: %s\n      policy: gl-deploy\n      client: curl\n", e.broker.URL))
	r := glciRun()
	if r.code != 0 || !strings.Contains(r.stdout, "deploy has AWS credentials until") || !strings.Contains(r.stdout, `Ferry: policy "gl-deploy" granted`) {
		t.Fatalf("gitlab-ci-local: exit %d\n%s\n%s", r.code, redact(r.stdout, tok), redact(r.stderr, tok))
	}
	if strings.Contains(r.stdout+r.stderr, tok) {
		t.Error("the job's token reached gitlab-ci-local's output")
	}

	// A missing required input fails the pipeline before any job runs.
	pipeline("      policy: gl-deploy\n")
	r = glciRun()
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "`url` input: required value has not been provided") {
		t.Errorf("a missing url: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// skipUnlessCI skips a test whose tool is missing here, and fails it in CI,
// where `make test` installs every tool.
func skipUnlessCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}
