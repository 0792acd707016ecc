package actions_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The runner runs the committed dist/index.js and nothing else: no npm
// install happens in a workflow. These tests keep that file honest.

// TestGitHubActionDistIsBundled checks, without node_modules, that dist is
// a self-contained bundle of the current src: no package import left for
// the runner to resolve, and every string literal of src inside it.
func TestGitHubActionDistIsBundled(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "actions", "github")
	dist, err := os.ReadFile(filepath.Join(dir, "dist", "index.js"))
	if err != nil {
		t.Fatalf("dist/index.js is missing (cd actions/github && npm ci && npm run build): %v", err)
	}
	if bare := regexp.MustCompile(`(?m)(from\s+|require\()\s*["']@actions/`).Find(dist); bare != nil {
		t.Errorf("dist/index.js imports %q at run time: it is not bundled", bare)
	}
	var pkg struct{ Type string }
	data, err := os.ReadFile(filepath.Join(dir, "dist", "package.json"))
	if err != nil || json.Unmarshal(data, &pkg) != nil || pkg.Type != "module" {
		t.Errorf("dist/package.json must say type: module, or node reads the ESM bundle as CommonJS (err %v)", err)
	}

	// Every string literal of the action's own sources must be in the bundle:
	// a literal that is not means dist was built from other sources.
	srcs, err := filepath.Glob(filepath.Join(dir, "src", "*.js"))
	if err != nil {
		t.Fatal(err)
	}
	// Quoted literals, and the fixed parts of template literals.
	literal := regexp.MustCompile("'([^'\\\\\\n]{12,})'|`([^`$\\\\\\n]{12,})(?:\\$\\{|`)|\\}([^`$\\\\\\n{}()]{12,})(?:\\$\\{|`)")
	checked := 0
	for _, src := range srcs {
		if strings.HasSuffix(src, ".test.js") {
			continue
		}
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllSubmatch(code, -1) {
			lit := bytes.Join(m[1:], nil)
			if bytes.HasPrefix(lit, []byte("./")) || bytes.HasPrefix(lit, []byte("@")) {
				continue // module specifiers: the bundler replaces them
			}
			checked++
			if !bytes.Contains(dist, lit) {
				t.Errorf("dist/index.js lacks %q from %s: rebuild it (npm run build)", lit, filepath.Base(src))
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d string literals found in src; the freshness check has nothing to hold on to", checked)
	}
}

// TestGitHubActionDistIsFreshBuild rebuilds dist with the pinned ncc and
// compares it byte for byte with the committed one. It needs node_modules
// (npm ci), so it skips without them: CI runs `npm ci` first (see
// actions/github/README.md).
func TestGitHubActionDistIsFreshBuild(t *testing.T) {
	node := requireTool(t, "node")
	dir := filepath.Join(repoRoot(t), "actions", "github")
	ncc := filepath.Join(dir, "node_modules", "@vercel", "ncc", "dist", "ncc", "cli.js")
	if _, err := os.Stat(ncc); err != nil {
		t.Skip("actions/github/node_modules is not installed (cd actions/github && npm ci)")
	}
	out := t.TempDir()
	cmd := exec.Command(node, ncc, "build", "src/index.js", "--out", out, "--license", "licenses.txt", "--no-source-map-register", "--quiet")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ncc build: %v\n%s", err, b)
	}
	for _, f := range []string{"index.js", "licenses.txt", "package.json"} {
		built, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(dir, "dist", f))
		if err != nil {
			t.Fatalf("dist/%s is missing: %v", f, err)
		}
		if !bytes.Equal(built, committed) {
			t.Errorf("dist/%s is stale: run `npm run build` in actions/github and commit dist/", f)
		}
	}
}

// TestGitHubActionUnitTests runs the action's own node:test unit tests,
// which need no node_modules.
func TestGitHubActionUnitTests(t *testing.T) {
	node := requireTool(t, "node")
	dir := filepath.Join(repoRoot(t), "actions", "github")
	// Files, not a directory: node 20 and 22 read a directory argument
	// differently.
	tests, err := filepath.Glob(filepath.Join(dir, "src", "*.test.js"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no unit tests in actions/github/src (err %v)", err)
	}
	cmd := exec.Command(node, append([]string{"--test"}, tests...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^# pass [1-9]`).Match(out) {
		t.Errorf("node --test passed no test:\n%s", out)
	}
}
