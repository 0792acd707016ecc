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

// The bundles the runner runs: the main step, the post step, and the
// entry point that an aws-profile's credential_process starts.
var distBundles = []string{"index.js", "post/index.js", "credential-process/index.js"}

// TestGitHubActionDistIsBundled checks, without node_modules, that dist
// holds self-contained bundles of the current src: no package import left
// for the runner to resolve, and every string literal of src inside them.
func TestGitHubActionDistIsBundled(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "actions", "github")
	var all []byte
	for _, b := range distBundles {
		dist, err := os.ReadFile(filepath.Join(dir, "dist", b))
		if err != nil {
			t.Fatalf("dist/%s is missing (cd actions/github && npm ci && npm run build): %v", b, err)
		}
		if bare := regexp.MustCompile(`(?m)(from\s+|require\()\s*["']@actions/`).Find(dist); bare != nil {
			t.Errorf("dist/%s imports %q at run time: it is not bundled", b, bare)
		}
		var pkg struct{ Type string }
		data, err := os.ReadFile(filepath.Join(dir, "dist", filepath.Dir(b), "package.json"))
		if err != nil || json.Unmarshal(data, &pkg) != nil || pkg.Type != "module" {
			t.Errorf("dist/%s/package.json must say type: module, or node reads the ESM bundle as CommonJS (err %v)", filepath.Dir(b), err)
		}
		all = append(all, dist...)
	}
	// The credential_process bundle must not print to stdout on its own:
	// stdout is the credential JSON the SDK reads, and @actions/core writes
	// workflow commands there.
	cp, err := os.ReadFile(filepath.Join(dir, "dist", "credential-process", "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cp, []byte("::add-mask::")) || bytes.Contains(cp, []byte("issueCommand")) {
		t.Error("dist/credential-process/index.js contains @actions/core's command writer; its stdout must carry only the credential")
	}

	// Every string literal of the action's own sources must be in a bundle:
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
			if !bytes.Contains(all, lit) {
				t.Errorf("no dist bundle has %q from %s: rebuild it (npm run build)", lit, filepath.Base(src))
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d string literals found in src; the freshness check has nothing to hold on to", checked)
	}
}

// TestGitHubActionDistIsFreshBuild runs the package's build script
// (build.mjs, what `npm run build` runs) into a temporary directory and
// compares the whole tree byte for byte with the committed dist. It needs
// node_modules (npm ci), so it skips without them: CI runs `npm ci` first
// (see actions/github/README.md).
func TestGitHubActionDistIsFreshBuild(t *testing.T) {
	node := requireTool(t, "node")
	dir := filepath.Join(repoRoot(t), "actions", "github")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@vercel", "ncc", "dist", "ncc", "cli.js")); err != nil {
		t.Skip("actions/github/node_modules is not installed (cd actions/github && npm ci)")
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs", out)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, b)
	}
	built, committed := treeOf(t, out), treeOf(t, filepath.Join(dir, "dist"))
	for name, data := range built {
		if c, ok := committed[name]; !ok {
			t.Errorf("dist/%s is not committed: run `npm run build` in actions/github and commit dist/", name)
		} else if !bytes.Equal(c, data) {
			t.Errorf("dist/%s is stale: run `npm run build` in actions/github and commit dist/", name)
		}
	}
	for name := range committed {
		if _, ok := built[name]; !ok {
			t.Errorf("dist/%s is committed but the build no longer makes it: delete it", name)
		}
	}
}

// treeOf reads every file under root, keyed by its slash path.
func treeOf(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
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
