package actions_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ghJob is one GitHub Actions job as the runner runs it: a RUNNER_TEMP and
// HOME shared by its steps, the OIDC request variables in every step's
// environment (the job has id-token: write), and the variables each step
// appended to GITHUB_ENV carried into the steps after it.
type ghJob struct {
	t         *testing.T
	runner    *runnerTokenEndpoint
	dir       string
	temp      string
	workspace string
	// exported is what earlier steps put in GITHUB_ENV, as the runner
	// accumulates it: a later export of a name replaces an earlier one.
	exported map[string]string
	// extra is added to every step's environment (e.g. a local STS
	// endpoint for the aws CLI).
	extra []string
	steps int
}

func newJob(t *testing.T, runner *runnerTokenEndpoint) *ghJob {
	t.Helper()
	dir := t.TempDir()
	j := &ghJob{t: t, runner: runner, dir: dir, temp: filepath.Join(dir, "_temp"), workspace: filepath.Join(dir, "workspace"), exported: map[string]string{}}
	for _, d := range []string{j.temp, j.workspace, filepath.Join(dir, "home")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

// awkwardTemp moves the job's RUNNER_TEMP under a name with a space, a #
// and a ;, which the paths in a credential_process line must survive in
// every reader of the AWS config file (a self-hosted runner's home can
// have a space).
func (j *ghJob) awkwardTemp() {
	j.temp = filepath.Join(j.dir, "run ner #1;temp")
	if err := os.Mkdir(j.temp, 0o700); err != nil {
		j.t.Fatal(err)
	}
}

// stepEnv is the environment the runner gives a step of this job.
func (j *ghJob) stepEnv() []string {
	envv := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(j.dir, "home"),
		"CI=true",
		"GITHUB_ACTIONS=true",
		"GITHUB_WORKSPACE=" + j.workspace,
		"RUNNER_TEMP=" + j.temp,
		"RUNNER_OS=Linux",
		"ACTIONS_ID_TOKEN_REQUEST_URL=" + j.runner.URL,
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + j.runner.RequestToken,
	}
	envv = append(envv, j.extra...)
	for _, k := range slices.Sorted(maps.Keys(j.exported)) {
		envv = append(envv, k+"="+j.exported[k])
	}
	return envv
}

// stepFiles makes the file-command files of one step.
func (j *ghJob) stepFiles() map[string]string {
	j.steps++
	files := map[string]string{}
	for _, name := range []string{"GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"} {
		files[name] = filepath.Join(j.dir, "step"+strconv.Itoa(j.steps)+"_"+strings.ToLower(name))
		if err := os.WriteFile(files[name], nil, 0o600); err != nil {
			j.t.Fatal(err)
		}
	}
	return files
}

// action runs the action's main step as the runner does: node on
// runs.main, an INPUT_ variable for every input given or defaulted (named
// as the runner names them: upper-cased, spaces to _, hyphens kept), the
// file-command files, and the OIDC request variables pointing at runner.
// extraEnv comes last and so overrides.
func (j *ghJob) action(inputs map[string]string, extraEnv ...string) actionRun {
	t := j.t
	t.Helper()
	_, meta := loadAction(t)
	for name := range inputs {
		if _, ok := meta.Inputs[name]; !ok {
			t.Fatalf("input %q is not declared in action.yml", name)
		}
	}
	var envv []string
	for name, in := range meta.Inputs {
		value, given := inputs[name]
		if !given && in.Default != nil {
			value, given = *in.Default, true
		}
		if given {
			envv = append(envv, "INPUT_"+strings.ToUpper(strings.ReplaceAll(name, " ", "_"))+"="+value)
		}
	}
	return j.node(meta.Runs.Main, append(envv, extraEnv...))
}

// post runs the action's post step for the main step that produced main:
// its saved state comes back as STATE_ variables.
func (j *ghJob) post(main actionRun) actionRun {
	j.t.Helper()
	_, meta := loadAction(j.t)
	if meta.Runs.Post == "" {
		j.t.Fatal("action.yml has no runs.post")
	}
	var envv []string
	for k, v := range main.state {
		envv = append(envv, "STATE_"+k+"="+v)
	}
	return j.node(meta.Runs.Post, envv)
}

func (j *ghJob) node(script string, envv []string) actionRun {
	t := j.t
	t.Helper()
	node := requireTool(t, "node")
	dir, meta := loadAction(t)
	files := j.stepFiles()
	full := j.stepEnv()
	for name, path := range files {
		full = append(full, name+"="+path)
	}
	full = append(full, envv...)
	cmd := exec.Command(node, filepath.Join(dir, script))
	cmd.Dir = j.workspace
	cmd.Env = full
	r := actionRun{result: run(t, cmd)}
	var err error
	if r.env, err = parseFileCommands(files["GITHUB_ENV"]); err != nil {
		t.Fatal(err)
	}
	if r.outputs, err = parseFileCommands(files["GITHUB_OUTPUT"]); err != nil {
		t.Fatal(err)
	}
	if r.state, err = parseFileCommands(files["GITHUB_STATE"]); err != nil {
		t.Fatal(err)
	}
	for name := range r.outputs {
		if _, ok := meta.Outputs[name]; !ok {
			t.Errorf("the action set output %q, which action.yml does not declare", name)
		}
	}
	maps.Copy(j.exported, r.env)
	return r
}

// run runs a `run:` step of the job: name with args and the job's
// environment.
func (j *ghJob) run(name string, args ...string) result {
	j.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = j.workspace
	cmd.Env = j.stepEnv()
	return run(j.t, cmd)
}
