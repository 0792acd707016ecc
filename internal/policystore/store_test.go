package policystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/trust"
)

var opts = trust.LoadOptions{Issuers: []string{"github", "gitlab"}, Kinds: registry.Kinds(), Platforms: registry.Platforms()}

// awsPolicy is a valid policy granting role in account 123456789012.
func awsPolicy(name, role string) string {
	return fmt.Sprintf(`name: %s
description: test policy
issuer: github
match:
  repository: acme/app
  repository_id: "892345671"
  ref: refs/heads/main
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/%s
    duration: 15m
`, name, role)
}

const tokenPolicy = `issuer: gitlab
match:
  project_path: group/app
grant:
  token:
    audience: https://internal.example
    duration: 5m
`

// brokenRole is awsPolicy("deploy", …) with a role ARN the loader refuses
// at line 10, column 15.
var brokenRole = strings.Replace(awsPolicy("deploy", "x"), "arn:aws:iam::123456789012:role/x", "not-an-arn", 1)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// policyDir writes files into a fresh directory.
func policyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		write(t, dir, name, content)
	}
	return dir
}

func mustOpen(t *testing.T, dir string, logger *slog.Logger) *Store {
	t.Helper()
	s, err := Open(dir, opts, logger)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func roleOf(t *testing.T, set *trust.Set, name string) string {
	t.Helper()
	p, ok := set.Lookup(name)
	if !ok {
		t.Fatalf("policy %q is not in the set", name)
	}
	g, ok := p.Grant.(*awssts.Spec)
	if !ok {
		t.Fatalf("policy %q has a %s grant, want aws", name, p.Grant.Kind())
	}
	return g.RoleARN
}

// logBuffer is a slog handler's destination that tests can read while
// Watch writes to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records decodes the JSON log lines written so far.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// find returns the records whose msg is msg.
func (b *logBuffer) find(t *testing.T, msg string) []map[string]any {
	var out []map[string]any
	for _, rec := range b.records(t) {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestOpenLoadsPolicyFilesOnly(t *testing.T) {
	dir := policyDir(t, map[string]string{
		"deploy.yaml":  awsPolicy("deploy", "deploy"),
		"internal.yml": tokenPolicy,
		"README.md":    "not: [a policy",
		".hidden.yaml": "not: [a policy",
		"deploy.test.yaml": `cases:
  - name: anything
`,
	})
	// A subdirectory's policy files are not part of the set.
	if err := os.Mkdir(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "old"), "broken.yaml", "not: [a policy")

	s := mustOpen(t, dir, nil)
	set := s.Current()
	if set == nil || set.Len() != 2 {
		t.Fatalf("Current has %d policies, want 2", set.Len())
	}
	if got := roleOf(t, set, "deploy"); got != "arn:aws:iam::123456789012:role/deploy" {
		t.Errorf("deploy role = %q", got)
	}
	for name, want := range map[string]bool{"deploy": true, "internal": true, "broken": false, "README": false, "": false} {
		if got := s.Known(name); got != want {
			t.Errorf("Known(%q) = %v, want %v", name, got, want)
		}
	}
	if err := s.LastError(); err != nil {
		t.Errorf("LastError after a good Open = %v", err)
	}
}

func TestOpenEmptyDirIsAnEmptySet(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	if s.Current() == nil || s.Current().Len() != 0 {
		t.Fatalf("Current = %v, want an empty set", s.Current())
	}
	if s.Known("deploy") {
		t.Error("an empty set knows a policy")
	}
}

func TestOpenBrokenDir(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// want is every problem's FILE:LINE:COL prefix, relative to the dir.
		want []string
		// msg is a fragment of the first problem's message.
		msg string
	}{
		{
			name:  "yaml syntax",
			files: map[string]string{"deploy.yaml": "name: deploy\nmatch: [unclosed\n"},
			want:  []string{"deploy.yaml:2:1"},
			msg:   "YAML",
		},
		{
			name:  "bad role arn",
			files: map[string]string{"deploy.yaml": brokenRole},
			want:  []string{"deploy.yaml:10:15"},
			msg:   "not an IAM role ARN",
		},
		{
			name:  "unknown issuer",
			files: map[string]string{"deploy.yaml": strings.Replace(awsPolicy("deploy", "deploy"), "issuer: github", "issuer: jenkins", 1)},
			want:  []string{"deploy.yaml:3:9"},
			msg:   "jenkins",
		},
		{
			name: "unpinned identity",
			files: map[string]string{"deploy.yaml": `issuer: github
match:
  ref: refs/heads/main
grant:
  token:
    audience: https://internal.example
`},
			want: []string{"deploy.yaml:2:1"},
			msg:  "repository",
		},
		{
			name: "one good, one broken: nothing loads",
			files: map[string]string{
				"a.yaml": awsPolicy("a", "a"),
				"b.yaml": awsPolicy("b", "b") + "unknown_key: 1\n",
			},
			want: []string{"b.yaml:12:1"},
			msg:  "unknown_key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, tt.files)
			s, err := Open(dir, opts, nil)
			if err == nil {
				t.Fatalf("Open succeeded with %d policies", s.Current().Len())
			}
			if s != nil {
				t.Error("Open returned a store along with an error")
			}
			var le *trust.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error is not a *trust.LoadError: %v", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), filepath.Join(dir, want)+": ") {
					t.Errorf("error does not name %s:\n%v", want, err)
				}
			}
			if !strings.Contains(le.Problems[0].Message, tt.msg) {
				t.Errorf("first problem %q does not say %q", le.Problems[0].Message, tt.msg)
			}
		})
	}
}

func TestOpenMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	s, err := Open(dir, opts, nil)
	if err == nil {
		t.Fatalf("Open of a missing directory succeeded with %d policies", s.Current().Len())
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error does not name the directory: %v", err)
	}
}

func TestReloadInstallsAGoodEdit(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	s := mustOpen(t, dir, nil)
	before := s.Current()

	write(t, dir, "deploy.yaml", awsPolicy("deploy", "v2"))
	write(t, dir, "internal.yaml", tokenPolicy)
	changed, err := s.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want true, nil", changed, err)
	}
	after := s.Current()
	if after == before {
		t.Fatal("Current is still the old set")
	}
	if got := roleOf(t, after, "deploy"); got != "arn:aws:iam::123456789012:role/v2" {
		t.Errorf("after reload deploy role = %q, want role/v2", got)
	}
	if !s.Known("internal") {
		t.Error("a newly added policy is not Known")
	}
	// A set handed out earlier is immutable: requests in flight keep
	// deciding against the policy they started with.
	if got := roleOf(t, before, "deploy"); got != "arn:aws:iam::123456789012:role/v1" {
		t.Errorf("the old set changed under its holder: role = %q", got)
	}

	// Removing a file removes its policy.
	if err := os.Remove(filepath.Join(dir, "internal.yaml")); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); err != nil || !changed {
		t.Fatalf("Reload after a removal = %v, %v; want true, nil", changed, err)
	}
	if s.Known("internal") {
		t.Error("a removed policy is still Known")
	}
}

// git-sync publishes each checkout by swapping a symlink: the policy
// directory is that link, and a swap is a change.
func TestReloadFollowsASymlinkedDirectory(t *testing.T) {
	base := t.TempDir()
	for v, role := range map[string]string{"v1": "one", "v2": "two"} {
		if err := os.Mkdir(filepath.Join(base, v), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(base, v), "deploy.yaml", awsPolicy("deploy", role))
	}
	link := filepath.Join(base, "current")
	if err := os.Symlink("v1", link); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, link, nil)
	if got := roleOf(t, s.Current(), "deploy"); got != "arn:aws:iam::123456789012:role/one" {
		t.Fatalf("role = %q", got)
	}
	if err := os.Symlink("v2", link+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".tmp", link); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); err != nil || !changed {
		t.Fatalf("Reload after the link moved = %v, %v; want true, nil", changed, err)
	}
	if got := roleOf(t, s.Current(), "deploy"); got != "arn:aws:iam::123456789012:role/two" {
		t.Errorf("role = %q after the link moved, want role/two", got)
	}
}

func TestReloadUnchanged(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
	}{
		{"nothing", func(t *testing.T, dir string) {}},
		{"same bytes rewritten, new mtime", func(t *testing.T, dir string) {
			write(t, dir, "deploy.yaml", awsPolicy("deploy", "v1"))
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(dir, "deploy.yaml"), future, future); err != nil {
				t.Fatal(err)
			}
		}},
		{"non-policy file", func(t *testing.T, dir string) { write(t, dir, "notes.txt", "hello") }},
		{"subdirectory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "sub"), "x.yaml", "broken: [")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
			s := mustOpen(t, dir, nil)
			before := s.Current()
			tt.edit(t, dir)
			changed, err := s.Reload()
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			// false means "no new set installed", not "failed".
			if changed {
				t.Error("Reload reported a new set for an unchanged directory")
			}
			if s.Current() != before {
				t.Error("an unchanged reload swapped the set")
			}
		})
	}
}

func TestReloadFailureKeepsLastGoodSet(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		// where is the FILE:LINE:COL (or FILE) the error must name.
		where string
	}{
		{"yaml syntax", func(t *testing.T, dir string) {
			write(t, dir, "deploy.yaml", "name: deploy\nmatch: [unclosed\n")
		}, "deploy.yaml:2:1: "},
		{"invalid grant", func(t *testing.T, dir string) {
			write(t, dir, "deploy.yaml", brokenRole)
		}, "deploy.yaml:10:15: "},
		{"duplicate name in a new file", func(t *testing.T, dir string) {
			write(t, dir, "zz-copy.yaml", awsPolicy("deploy", "other"))
		}, "zz-copy.yaml:1:7: "},
		{"empty file", func(t *testing.T, dir string) {
			write(t, dir, "deploy.yaml", "")
		}, "deploy.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
			s := mustOpen(t, dir, nil)
			good := s.Current()

			tt.edit(t, dir)
			changed, err := s.Reload()
			if err == nil {
				t.Fatalf("Reload of a broken directory succeeded (changed=%v)", changed)
			}
			if changed {
				t.Error("a failed Reload reported a new set")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.where)) {
				t.Errorf("error does not name %s:\n%v", tt.where, err)
			}
			if s.Current() != good {
				t.Fatal("a failed reload replaced the live set")
			}
			if !s.Known("deploy") || roleOf(t, s.Current(), "deploy") != "arn:aws:iam::123456789012:role/v1" {
				t.Error("the last good policy is no longer served")
			}
			if last := s.LastError(); last == nil || last.Error() != err.Error() {
				t.Errorf("LastError = %v, want the reload's error %v", last, err)
			}

			// Still broken: the next reload fails the same way and
			// still keeps the good set.
			if _, err := s.Reload(); err == nil || s.Current() != good {
				t.Errorf("second reload of a broken dir: err=%v, set kept=%v", err, s.Current() == good)
			}
		})
	}
}

func TestReloadRecovers(t *testing.T) {
	tests := []struct {
		name string
		fix  string
		// changed is what the fixing Reload reports: a set is installed
		// only if the files differ from those behind the live set.
		changed bool
		role    string
	}{
		{"fixed to something new", awsPolicy("deploy", "v2"), true, "v2"},
		{"reverted to the live content", awsPolicy("deploy", "v1"), false, "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
			s := mustOpen(t, dir, nil)
			write(t, dir, "deploy.yaml", brokenRole)
			if _, err := s.Reload(); err == nil {
				t.Fatal("Reload of a broken file succeeded")
			}
			if s.LastError() == nil {
				t.Fatal("LastError is nil after a failed reload")
			}

			write(t, dir, "deploy.yaml", tt.fix)
			changed, err := s.Reload()
			if err != nil {
				t.Fatalf("Reload after the fix: %v", err)
			}
			if changed != tt.changed {
				t.Errorf("Reload after the fix reported changed=%v, want %v", changed, tt.changed)
			}
			if err := s.LastError(); err != nil {
				t.Errorf("LastError after the fix = %v, want nil", err)
			}
			if got := roleOf(t, s.Current(), "deploy"); got != "arn:aws:iam::123456789012:role/"+tt.role {
				t.Errorf("role = %q, want role/%s", got, tt.role)
			}
		})
	}
}

func TestReloadDirectoryGone(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	s := mustOpen(t, dir, nil)
	good := s.Current()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Reload of a removed directory: %v, want an error naming it", err)
	}
	if s.Current() != good || s.LastError() == nil {
		t.Error("a removed directory dropped the last good set or the error")
	}
}

// watch runs s.Watch in the background; the returned stop cancels it and
// waits for Watch to return.
func watch(t *testing.T, s *Store, interval time.Duration, sig <-chan os.Signal) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, interval, sig)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Watch did not return after its context ended")
		}
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return stop
}

func TestWatchReloadsOnSignalAndLogs(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	logger, logs := newLogger()
	s := mustOpen(t, dir, logger)
	good := s.Current()
	sig := make(chan os.Signal) // unbuffered: a send returns once Watch took it
	stop := watch(t, s, 0, sig)

	// A broken edit: the good set stays, the log says why.
	write(t, dir, "deploy.yaml", brokenRole)
	sig <- syscall.SIGHUP
	eventually(t, "the failed reload to be logged", func() bool {
		return len(logs.find(t, "policy reload failed; keeping the last good set")) > 0
	})
	rec := logs.find(t, "policy reload failed; keeping the last good set")[0]
	if rec["level"] != "ERROR" {
		t.Errorf("failed reload logged at %v, want ERROR", rec["level"])
	}
	if msg, _ := rec["err"].(string); !strings.Contains(msg, filepath.Join(dir, "deploy.yaml")+":10:15: ") {
		t.Errorf("log does not say which file and line: err=%q", msg)
	}
	if s.Current() != good {
		t.Fatal("Watch installed a broken set")
	}
	if err := s.LastError(); err == nil || !strings.Contains(err.Error(), "deploy.yaml:10:15") {
		t.Errorf("LastError = %v", err)
	}

	// Fixed: the new set goes live and the log says so.
	write(t, dir, "deploy.yaml", awsPolicy("deploy", "v2"))
	sig <- syscall.SIGHUP
	eventually(t, "the fixed policy to go live", func() bool { return s.Current() != good })
	if got := roleOf(t, s.Current(), "deploy"); got != "arn:aws:iam::123456789012:role/v2" {
		t.Errorf("role = %q, want role/v2", got)
	}
	eventually(t, "the reload to be logged", func() bool { return len(logs.find(t, "policies reloaded")) > 0 })
	if rec := logs.find(t, "policies reloaded")[0]; rec["policies"] != 1.0 {
		t.Errorf("reload log says %v policies, want 1", rec["policies"])
	}
	if err := s.LastError(); err != nil {
		t.Errorf("LastError after the fix = %v", err)
	}

	// An unchanged directory reloads quietly.
	n := len(logs.records(t))
	sig <- syscall.SIGHUP
	sig <- syscall.SIGHUP // the first reload has finished once this is taken
	if got := len(logs.records(t)); got != n {
		t.Errorf("an unchanged reload logged %d records", got-n)
	}
	stop()
}

func TestWatchLogsRecoveryToTheLiveContent(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	logger, logs := newLogger()
	s := mustOpen(t, dir, logger)
	sig := make(chan os.Signal)
	stop := watch(t, s, 0, sig)

	write(t, dir, "deploy.yaml", brokenRole)
	sig <- syscall.SIGHUP
	eventually(t, "the failed reload", func() bool { return s.LastError() != nil })

	// Reverting the edit leaves the live set as it is, but the error is
	// over and the operator who saw it logged hears so.
	write(t, dir, "deploy.yaml", awsPolicy("deploy", "v1"))
	sig <- syscall.SIGHUP
	eventually(t, "the error to clear", func() bool { return s.LastError() == nil })
	eventually(t, "the recovery to be logged", func() bool {
		return len(logs.find(t, "policy files fixed; the last good set is live")) > 0
	})
	stop()
}

func TestWatchReloadsOnInterval(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	s := mustOpen(t, dir, nil) // nil logger: Watch must still log safely
	stop := watch(t, s, 5*time.Millisecond, nil)

	write(t, dir, "deploy.yaml", brokenRole)
	eventually(t, "the interval reload to see the broken file", func() bool { return s.LastError() != nil })
	if !s.Known("deploy") {
		t.Fatal("the last good set was dropped")
	}

	write(t, dir, "deploy.yaml", awsPolicy("deploy", "v2"))
	eventually(t, "the interval reload to install the fix", func() bool {
		p, ok := s.Current().Lookup("deploy")
		return ok && p.Grant.(*awssts.Spec).RoleARN == "arn:aws:iam::123456789012:role/v2"
	})
	stop() // fails the test unless Watch returns once ctx ends
}

func TestABrokenDirectoryIsReportedOncePerProblemNotPerTick(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	logger, logs := newLogger()
	s := mustOpen(t, dir, logger)
	ctx := context.Background()
	failures := func() int { return len(logs.find(t, "policy reload failed; keeping the last good set")) }

	write(t, dir, "deploy.yaml", brokenRole)
	for range 5 {
		s.reloadAndLog(ctx, false)
	}
	if n := failures(); n != 1 {
		t.Errorf("five ticks over the same broken file logged %d failures, want 1", n)
	}
	if err := s.LastError(); err == nil || !strings.Contains(err.Error(), "deploy.yaml:10:15") {
		t.Errorf("LastError = %v, want the problem still named", err)
	}
	s.reloadAndLog(ctx, true)
	if n := failures(); n != 2 {
		t.Errorf("a SIGHUP over the broken file logged %d failures in all, want it reported again (2)", n)
	}
	write(t, dir, "other.yaml", "name: [\n")
	s.reloadAndLog(ctx, false)
	if n := failures(); n != 3 {
		t.Errorf("a new problem logged %d failures in all, want 3", n)
	}
}

func TestWatchStopsWithoutTicksOrSignals(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	stop := watch(t, s, 0, nil) // nothing will ever fire
	stop()
}

// Requests read Current while reloads swap it: under -race this checks
// the swap is safe, and every set a reader sees is one complete version.
func TestConcurrentReadsDuringReloads(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v0")})
	s := mustOpen(t, dir, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				set := s.Current()
				p, ok := set.Lookup("deploy")
				if !ok || !strings.HasPrefix(p.Grant.(*awssts.Spec).RoleARN, "arn:aws:iam::123456789012:role/v") || !s.Known("deploy") {
					errs <- fmt.Sprintf("reader saw a set without the deploy policy (%d policies)", set.Len())
					return
				}
				_ = s.LastError()
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		content := awsPolicy("deploy", fmt.Sprintf("v%d", i))
		if i%3 == 0 {
			content = brokenRole
		}
		write(t, dir, "deploy.yaml", content)
		_, _ = s.Reload()
	}
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestFingerprint(t *testing.T) {
	base := map[string]string{"a.yaml": "xy", "b.yaml": "z"}
	tests := []struct {
		name  string
		files map[string]string
		same  bool
	}{
		{"identical", map[string]string{"a.yaml": "xy", "b.yaml": "z"}, true},
		{"plus non-policy files", map[string]string{"a.yaml": "xy", "b.yaml": "z", "c.txt": "q", "d.yaml~": "q"}, true},
		{"plus test and hidden files", map[string]string{"a.yaml": "xy", "b.yaml": "z", "a.test.yaml": "cases: []", ".swap.yaml": "q"}, true},
		{"same length, other bytes", map[string]string{"a.yaml": "xq", "b.yaml": "z"}, false},
		{"bytes moved between files", map[string]string{"a.yaml": "x", "b.yaml": "yz"}, false},
		{"renamed", map[string]string{"a.yaml": "xy", "c.yaml": "z"}, false},
		{"extension changed", map[string]string{"a.yaml": "xy", "b.yml": "z"}, false},
		{"file added", map[string]string{"a.yaml": "xy", "b.yaml": "z", "c.yml": ""}, false},
		{"file removed", map[string]string{"a.yaml": "xy"}, false},
	}
	want, err := fingerprint(policyDir(t, base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fingerprint(policyDir(t, tt.files))
			if err != nil {
				t.Fatal(err)
			}
			if (got == want) != tt.same {
				t.Errorf("fingerprint equal = %v, want %v", got == want, tt.same)
			}
		})
	}
	t.Run("subdirectories ignored", func(t *testing.T) {
		dir := policyDir(t, base)
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "sub"), "c.yaml", "more")
		got, err := fingerprint(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Error("a subdirectory's files changed the fingerprint")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := fingerprint(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Error("fingerprint of a missing directory succeeded")
		}
	})
}

// A symlink out of the policy directory is a load error, and the
// fingerprint treats it as the loader does: by the refusal, never by the
// file it points to, which is not read at all.
func TestASymlinkOutOfTheDirectoryIsRefusedAndNotRead(t *testing.T) {
	dir := policyDir(t, map[string]string{"deploy.yaml": awsPolicy("deploy", "v1")})
	s := mustOpen(t, dir, nil)
	good := s.Current()

	outside := filepath.Join(t.TempDir(), "other.yaml")
	write(t, filepath.Dir(outside), "other.yaml", awsPolicy("other", "x"))
	if err := os.Symlink(outside, filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), "outside the policy directory") {
		t.Fatalf("Reload with a link out of the directory: %v", err)
	}
	if s.Current() != good || s.Known("other") {
		t.Error("a link out of the directory changed the live set")
	}

	before, err := fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Dir(outside), "other.yaml", awsPolicy("other", "changed"))
	after, err := fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Error("the content behind a link out of the directory changed the fingerprint: it was read")
	}

	// A link that stays inside is read like any file, by load and
	// fingerprint alike.
	if err := os.Remove(filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "..data"), "other.yaml", awsPolicy("other", "inside"))
	if err := os.Symlink(filepath.Join("..data", "other.yaml"), filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); err != nil || !changed || roleOf(t, s.Current(), "other") != "arn:aws:iam::123456789012:role/inside" {
		t.Fatalf("Reload with a link inside: %v, %v", changed, err)
	}
	write(t, filepath.Join(dir, "..data"), "other.yaml", awsPolicy("other", "inside2"))
	if changed, err := s.Reload(); err != nil || !changed {
		t.Errorf("an edit behind a link inside was not seen: %v, %v", changed, err)
	}
}
