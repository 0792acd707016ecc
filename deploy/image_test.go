package deploy_test

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
)

// There is no Docker engine here, so the image is checked from its
// Dockerfile: the build command it runs makes a static binary, and the
// user and entrypoint it declares are the ones the chart runs.

// instruction is one Dockerfile line, continuations joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, USER…
	args string
	line int
}

type stage struct {
	from  string
	instr []instruction
}

// parseDockerfile reads the instructions of each stage. It knows the
// Dockerfile syntax this repository uses: comments, backslash
// continuations, ARG before the first FROM.
func parseDockerfile(t *testing.T, path string) (globalArgs []instruction, stages []stage) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cur strings.Builder
	start, n := 0, 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		switch {
		case in.cmd == "FROM":
			stages = append(stages, stage{from: in.args})
		case len(stages) == 0:
			globalArgs = append(globalArgs, in)
		default:
			stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, in)
		}
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	if len(stages) == 0 {
		t.Fatalf("%s has no FROM", path)
	}
	return globalArgs, stages
}

func (s stage) last(cmd string) (instruction, bool) {
	for i := len(s.instr) - 1; i >= 0; i-- {
		if s.instr[i].cmd == cmd {
			return s.instr[i], true
		}
	}
	return instruction{}, false
}

func jsonArray(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("Dockerfile:%d: %s %s is not the exec (JSON) form: %v", in.line, in.cmd, in.args, err)
	}
	return v
}

// buildCommand is a `go build` line split into its environment and argv.
type buildCommand struct {
	env  []string // NAME=value, as written before the command
	argv []string
}

// splitCommand splits one plain shell command: NAME=value words, then
// words with "…" and '…' quoting and $NAME / ${NAME} expanded from vars.
// Anything more (&&, ;, |, $(…)) is refused: the test must be able to run
// exactly what the build runs.
func splitCommand(line string, vars map[string]string) (buildCommand, error) {
	var words []string
	var w strings.Builder
	inWord, quote := false, rune(0)
	runes := []rune(line)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case quote == '\'' && r != '\'':
			w.WriteRune(r)
		case r == '\'' || r == '"':
			if quote == r {
				quote = 0
			} else if quote == 0 {
				quote = r
			} else {
				w.WriteRune(r)
			}
			inWord = true
		case r == '$':
			name := ""
			if i+1 < len(runes) && runes[i+1] == '{' {
				end := slices.Index(runes[i:], '}')
				if end < 0 {
					return buildCommand{}, errors.New("unclosed ${")
				}
				name = string(runes[i+2 : i+end])
				i += end
			} else {
				j := i + 1
				for j < len(runes) && (runes[j] == '_' || runes[j] >= 'A' && runes[j] <= 'Z' || runes[j] >= 'a' && runes[j] <= 'z' || runes[j] >= '0' && runes[j] <= '9') {
					j++
				}
				name = string(runes[i+1 : j])
				i = j - 1
			}
			v, ok := vars[name]
			if !ok || name == "" {
				return buildCommand{}, fmt.Errorf("$%s is not a known build argument", name)
			}
			w.WriteString(v)
			inWord = true
		case quote == 0 && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case quote == 0 && strings.ContainsRune(";&|`<>()", r):
			return buildCommand{}, fmt.Errorf("%q: not one plain command", r)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return buildCommand{}, errors.New("unclosed quote")
	}
	if inWord {
		words = append(words, w.String())
	}
	var c buildCommand
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		c.env = append(c.env, words[0])
		words = words[1:]
	}
	c.argv = words
	return c, nil
}

// shippedTags are the build tags every shipped binary is built with; the
// tests' own binary uses the same.
const shippedTags = ferryproc.BuildTags

// checkBuildFlags: the command is `go build`, with cgo off, -trimpath and
// the shipped build tags.
func checkBuildFlags(t *testing.T, what string, c buildCommand) {
	t.Helper()
	if len(c.argv) < 2 || filepath.Base(c.argv[0]) != "go" || c.argv[1] != "build" {
		t.Fatalf("%s: %v is not a go build", what, c.argv)
	}
	if !slices.Contains(c.env, "CGO_ENABLED=0") {
		t.Errorf("%s: environment %v lacks CGO_ENABLED=0: the binary would need the image to have libc", what, c.env)
	}
	if !slices.Contains(c.argv, "-trimpath") {
		t.Errorf("%s: %v lacks -trimpath", what, c.argv)
	}
	if i := slices.Index(c.argv, "-tags"); i < 0 || i+1 >= len(c.argv) || c.argv[i+1] != shippedTags {
		t.Errorf("%s: %v lacks -tags %s", what, c.argv, shippedTags)
	}
}

// runBuild runs c from the repository root with its output sent to out.
func runBuild(t *testing.T, what string, c buildCommand, out string) {
	t.Helper()
	argv := slices.Clone(c.argv)
	i := slices.Index(argv, "-o")
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("%s: %v names no -o output", what, argv)
	}
	argv[i+1] = out
	cmd := exec.Command("go", argv[1:]...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), c.env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %v\n%s", what, argv, err, b)
	}
}

// checkStatic reports why the ELF file at path is not a static, cgo-free,
// path-trimmed Go binary.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			return errors.New("it has a program interpreter (PT_INTERP): it is dynamically linked")
		case elf.PT_DYNAMIC:
			return errors.New("it has a dynamic section (PT_DYNAMIC)")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("it needs shared libraries %v", libs)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("no Go build information: %w", err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" {
		return fmt.Errorf("built with CGO_ENABLED=%q", settings["CGO_ENABLED"])
	}
	if settings["-trimpath"] != "true" {
		return errors.New("built without -trimpath")
	}
	if settings["-tags"] != shippedTags {
		return fmt.Errorf("built with tags %q, not %q", settings["-tags"], shippedTags)
	}
	return nil
}

func TestCheckStaticRefusesADynamicBinary(t *testing.T) {
	f, err := elf.Open("/bin/sh")
	if err != nil {
		t.Skipf("no ELF /bin/sh to compare with: %v", err)
	}
	dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !dynamic {
		t.Skip("/bin/sh is static here")
	}
	if err := checkStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "PT_INTERP") {
		t.Errorf("checkStatic(/bin/sh) = %v, want a dynamic-linking error", err)
	}
}

// TestImageAndMakeBuildStaticBinaries runs the Dockerfile's build command
// and `make build`'s, as written, and checks both binaries.
func TestImageAndMakeBuildStaticBinaries(t *testing.T) {
	globalArgs, stages := parseDockerfile(t, "Dockerfile")
	build := stages[0]
	vars := map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "BUILDPLATFORM": runtime.GOOS + "/" + runtime.GOARCH}
	for _, in := range append(globalArgs, build.instr...) {
		if in.cmd == "ARG" {
			name, def, _ := strings.Cut(in.args, "=")
			if _, set := vars[name]; !set {
				vars[name] = def
			}
		}
	}
	var run instruction
	for _, in := range build.instr {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			run = in
		}
	}
	if run.cmd == "" {
		t.Fatal("the Dockerfile's first stage has no RUN … go build")
	}
	dockerBuild, err := splitCommand(run.args, vars)
	if err != nil {
		t.Fatalf("Dockerfile:%d: %v", run.line, err)
	}
	checkBuildFlags(t, "the Dockerfile's build", dockerBuild)

	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed; `make test` needs it anyway")
	}
	dry := exec.Command("make", "-s", "-n", "--no-print-directory", "build")
	dry.Dir = ".."
	// Under `make test` the parent's flags would reach this make too.
	dry.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	out, err := dry.Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 {
		t.Fatalf("make build runs %d commands, want one go build:\n%s", len(lines), out)
	}
	makeBuild, err := splitCommand(lines[0], nil)
	if err != nil {
		t.Fatalf("make build: %v", err)
	}
	checkBuildFlags(t, "make build", makeBuild)

	dir := t.TempDir()
	for what, c := range map[string]buildCommand{"the Dockerfile's build": dockerBuild, "make build": makeBuild} {
		bin := filepath.Join(dir, strings.ReplaceAll(what, " ", "-"))
		runBuild(t, what, c, bin)
		if err := checkStatic(bin); err != nil {
			t.Errorf("%s: not a static binary: %v", what, err)
		}
	}
}

func TestImageRunsWhatTheChartExpects(t *testing.T) {
	_, stages := parseDockerfile(t, "Dockerfile")
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") || !strings.Contains(final.from, ":nonroot") {
		t.Errorf("the image is FROM %s, want distroless/static's nonroot variant", final.from)
	}
	goMod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for _, l := range strings.Split(string(goMod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			goVersion = strings.Join(strings.SplitN(v, ".", 3)[:2], ".")
		}
	}
	if !strings.Contains(stages[0].from, "golang:"+goVersion) {
		t.Errorf("the build stage is FROM %s, want the Go of go.mod (%s)", stages[0].from, goVersion)
	}

	user, ok := final.last("USER")
	if !ok {
		t.Fatal("the image sets no USER: it would rely on the base image's")
	}
	uidText, gidText, _ := strings.Cut(user.args, ":")
	uid, err1 := strconv.ParseInt(uidText, 10, 64)
	gid, err2 := strconv.ParseInt(gidText, 10, 64)
	if err1 != nil || err2 != nil || uid == 0 {
		t.Fatalf("USER %s: want numeric uid:gid, not root, so the kubelet can check runAsNonRoot", user.args)
	}
	entry, ok := final.last("ENTRYPOINT")
	if !ok {
		t.Fatal("the image has no ENTRYPOINT")
	}
	entrypoint := jsonArray(t, entry)
	copied := false
	for _, in := range final.instr {
		if in.cmd == "COPY" && strings.HasSuffix(in.args, " "+entrypoint[0]) {
			copied = true
		}
	}
	if !copied {
		t.Errorf("ENTRYPOINT %v is not a file the image copies in", entrypoint)
	}
	cmdIn, _ := final.last("CMD")

	m := render(t)
	d, err := m.deployment("ferry")
	if err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	c := container(t, pod.Containers, "ferry")
	if c.Command != nil && !slices.Equal(c.Command, entrypoint) {
		t.Errorf("the chart runs %v, the image's ENTRYPOINT is %v", c.Command, entrypoint)
	}
	if cmd := jsonArray(t, cmdIn); len(c.Args) == 0 || c.Args[0] != cmd[0] {
		t.Errorf("the chart's args %v do not run the image's %q", c.Args, cmd[0])
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != uid || psc.RunAsGroup == nil || *psc.RunAsGroup != gid {
		t.Errorf("the chart runs as %+v, the image as %d:%d", psc, uid, gid)
	}
	if psc != nil && (psc.FSGroup == nil || *psc.FSGroup != gid) {
		t.Errorf("fsGroup %v: the key files must belong to the image's group %d to be readable", psc.FSGroup, gid)
	}
}

// TestShippedBuildLinksNoRPCTracing: with the shipped tags, nothing in the
// broker imports golang.org/x/net/trace, whose html/template is what made
// the linker keep every exported method (a 39 MB binary against 23 MB).
// A new dependency that brings it back fails here, not in a resident set.
func TestShippedBuildLinksNoRPCTracing(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-tags", shippedTags, "./cmd/ferry")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "google.golang.org/grpc") {
		t.Fatal("the broker no longer links gRPC: this test and the grpcnotrace tag can go")
	}
	if slices.Contains(deps, "golang.org/x/net/trace") {
		t.Errorf("built with -tags %s, the broker still imports golang.org/x/net/trace", shippedTags)
	}
}
