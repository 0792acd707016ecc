package client

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

var (
	expires = time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
	// A zone other than UTC: every format must print UTC.
	berlin = time.FixedZone("CET", 60*60)
)

func awsResult() *Result {
	return &Result{
		Policy: "deploy-prod", RequestID: "01JREQ", ExpiresAt: expires.In(berlin),
		AWS: &awssts.Answer{
			AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret/key+1", SessionToken: "session-token==",
			Expiration: expires.In(berlin), RoleARN: "arn:aws:iam::123456789012:role/deploy-prod",
		},
	}
}

func gcpResult() *Result {
	return &Result{
		Policy: "gcp-deploy", RequestID: "01JREQ", ExpiresAt: expires,
		GCP: &gcpiam.Answer{AccessToken: "ya29.access-token", ExpiresAt: expires, ServiceAccount: "deploy@acme-prod.iam.gserviceaccount.com"},
	}
}

func tokenResult() *Result {
	return &Result{
		Policy: "ci-artifacts", RequestID: "01JREQ", ExpiresAt: expires,
		Token: &tokensign.Answer{Token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig", ExpiresAt: expires},
	}
}

func githubResult() *Result {
	return &Result{
		Policy: "github-checkout", RequestID: "01JREQ", ExpiresAt: expires,
		GitHub: &ghapp.Answer{Token: "ghs_16C7e42F292c6912E7710c838347Ae178B4a", ExpiresAt: expires,
			Repositories: []string{"acme/infra"}, Permissions: map[string]string{"contents": "read"}},
	}
}

// hostile holds values a shell, a GitHub workflow command or a GITHUB_ENV
// heredoc could misread.
var hostile = []string{
	`it's`,
	`"double" \back\slash`,
	`$(touch PWNED)`,
	"`touch PWNED`",
	`$HOME ${HOME} $1 $@ $$`,
	"a;b|c&d>e<f *?[x] ~",
	"two\nlines",
	"trailing newline\n",
	"\nleading newline",
	" spaced  ",
	"-n",
	"EOF\nferry_0123456789abcdef01234567\nEOF",
	"pct %25 %0A %",
	"héllo ✓",
}

// noEnv is an environment with nothing set.
func noEnv(string) string { return "" }

func envOf(m map[string]string) Env { return func(k string) string { return m[k] } }

// wantVars is what the env and github formats export for res.
func wantVars(res *Result) map[string]string {
	m := map[string]string{}
	if a := res.AWS; a != nil {
		m["AWS_ACCESS_KEY_ID"] = a.AccessKeyID
		m["AWS_SECRET_ACCESS_KEY"] = a.SecretAccessKey
		m["AWS_SESSION_TOKEN"] = a.SessionToken
		m["AWS_CREDENTIAL_EXPIRATION"] = a.Expiration.UTC().Format(time.RFC3339)
	}
	if g := res.GCP; g != nil {
		m["CLOUDSDK_AUTH_ACCESS_TOKEN"] = g.AccessToken
		m["GOOGLE_OAUTH_ACCESS_TOKEN"] = g.AccessToken
	}
	if tk := res.Token; tk != nil {
		m["FERRY_TOKEN"] = tk.Token
	}
	if g := res.GitHub; g != nil {
		m["GH_TOKEN"] = g.Token
	}
	return m
}

var results = []struct {
	name string
	res  func() *Result
}{
	{"aws", awsResult},
	{"gcp", gcpResult},
	{"token", tokenResult},
	{"github", githubResult},
}

func TestOutputJSONRoundTrips(t *testing.T) {
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			res := r.res()
			var out bytes.Buffer
			if err := Output(&out, res, "json", noEnv); err != nil {
				t.Fatal(err)
			}
			var got Result
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out.String())
			}
			if !got.ExpiresAt.Equal(res.ExpiresAt) {
				t.Errorf("expires_at = %v, want %v", got.ExpiresAt, res.ExpiresAt)
			}
			// Compare with times normalised; the rest must survive exactly.
			norm := func(x *Result) string {
				b, _ := json.Marshal(x)
				var m map[string]any
				_ = json.Unmarshal(b, &m)
				delete(m, "expires_at")
				for _, k := range []string{"aws", "gcp", "token"} {
					if sub, ok := m[k].(map[string]any); ok {
						delete(sub, "expiration")
						delete(sub, "expires_at")
					}
				}
				b, _ = json.Marshal(m)
				return string(b)
			}
			if norm(&got) != norm(res) {
				t.Errorf("json output lost data:\n got %s\nwant %s", norm(&got), norm(res))
			}
			// The contract's field names, and only the grant's object.
			var m map[string]any
			_ = json.Unmarshal(out.Bytes(), &m)
			for _, k := range []string{"policy", "request_id", "expires_at", r.name} {
				if _, ok := m[k]; !ok {
					t.Errorf("json output has no %q: %s", k, out.String())
				}
			}
			for _, k := range []string{"aws", "gcp", "token"} {
				if _, ok := m[k]; ok != (k == r.name) {
					t.Errorf("json output has %q = %v for a %s result", k, ok, r.name)
				}
			}
		})
	}
}

func TestOutputCredentialProcess(t *testing.T) {
	var out bytes.Buffer
	if err := Output(&out, awsResult(), "credential-process", noEnv); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	want := map[string]any{
		"Version":         1.0,
		"AccessKeyId":     "ASIAEXAMPLE",
		"SecretAccessKey": "secret/key+1",
		"SessionToken":    "session-token==",
		"Expiration":      "2026-11-23T10:15:00Z", // UTC, RFC 3339, though the result was in CET
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("credential-process output:\n got %v\nwant %v", got, want)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("credential-process output is not one JSON line: %q", out.String())
	}
}

func TestOutputToken(t *testing.T) {
	tests := []struct {
		res  *Result
		want string
	}{
		{gcpResult(), "ya29.access-token\n"},
		{tokenResult(), "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig\n"},
		{githubResult(), "ghs_16C7e42F292c6912E7710c838347Ae178B4a\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if err := Output(&out, tt.res, "token", noEnv); err != nil {
			t.Fatalf("%s: %v", tt.res.Policy, err)
		}
		if out.String() != tt.want {
			t.Errorf("%s: token output = %q, want %q", tt.res.Policy, out.String(), tt.want)
		}
	}
}

// Formats that cannot express a grant refuse it, and print nothing.
func TestOutputRefusesWhatAFormatCannotExpress(t *testing.T) {
	tests := []struct {
		format string
		res    *Result
		want   string
	}{
		{"credential-process", gcpResult(), "aws grant"},
		{"credential-process", tokenResult(), "aws grant"},
		{"token", awsResult(), "gcp, token or github grant"},
		{"github", awsResult(), "GITHUB_ENV"}, // outside a GitHub Actions step
		{"yaml", awsResult(), `unknown format "yaml"`},
		{"", awsResult(), "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var out bytes.Buffer
			err := Output(&out, tt.res, tt.format, noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Output(%q) error = %v, want one saying %q", tt.format, err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("a refused format still printed %q", out.String())
			}
		})
	}
	// The unknown-format error lists every format.
	err := Output(&bytes.Buffer{}, awsResult(), "yaml", noEnv)
	for _, f := range Formats {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("unknown-format error does not list %q: %v", f, err)
		}
	}
}

// shellRead evals script in sh and returns the named variables as a child
// process sees them, so a variable that is set but not exported is missing.
func shellRead(t *testing.T, dir, script string, names []string) []string {
	t.Helper()
	const reader = `eval "$1" || exit 97; shift
exec sh -c 'for n do eval "v=\${$n-UNSET}"; printf "%s\000" "$v"; done' child "$@"`
	cmd := exec.Command("sh", append([]string{"-c", reader, "sh", script}, names...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v\n%s\nscript:\n%s", err, stderr.String(), script)
	}
	if stderr.Len() > 0 {
		t.Errorf("sh wrote to stderr: %s", stderr.String())
	}
	vals := strings.Split(string(out), "\x00")
	if len(vals) != len(names)+1 || vals[len(names)] != "" {
		t.Fatalf("read %d values for %d names: %q", len(vals)-1, len(names), out)
	}
	return vals[:len(names)]
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestOutputEnvEvaluatesBackToTheValues(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	type variant struct {
		name string
		res  *Result
	}
	var variants []variant
	for _, r := range results {
		variants = append(variants, variant{r.name, r.res()})
		for _, h := range hostile {
			res := r.res()
			switch {
			case res.AWS != nil:
				res.AWS.AccessKeyID, res.AWS.SecretAccessKey, res.AWS.SessionToken = h, h+"'", "'"+h
			case res.GCP != nil:
				res.GCP.AccessToken = h
			case res.Token != nil:
				res.Token.Token = h
			case res.GitHub != nil:
				res.GitHub.Token = h
			}
			variants = append(variants, variant{r.name + "/" + h, res})
		}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Output(&out, v.res, "env", noEnv); err != nil {
				t.Fatal(err)
			}
			want := wantVars(v.res)
			// One export per variable, nothing else a shell would run.
			if n := strings.Count(out.String(), "export "); n < len(want) {
				t.Errorf("%d exports for %d variables:\n%s", n, len(want), out.String())
			}
			dir := t.TempDir()
			names := sortedKeys(want)
			// Names the result does not set must stay unset.
			others := []string{"AWS_ACCESS_KEY_ID", "CLOUDSDK_AUTH_ACCESS_TOKEN", "FERRY_TOKEN", "GH_TOKEN"}
			for _, o := range others {
				if _, ok := want[o]; !ok {
					names = append(names, o)
					want[o] = "UNSET"
				}
			}
			got := shellRead(t, dir, out.String(), names)
			for i, n := range names {
				if got[i] != want[n] {
					t.Errorf("$%s = %q, want %q", n, got[i], want[n])
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "PWNED")); err == nil {
				t.Error("evaluating the env output ran a command from a value")
			}
		})
	}
}

// parseGitHubEnv reads a GITHUB_ENV file the way the runner does:
// NAME=VALUE lines, and NAME<<DELIM heredocs ending at a line equal to
// DELIM.
func parseGitHubEnv(t *testing.T, data string) (vars map[string]string, delims []string) {
	t.Helper()
	vars = map[string]string{}
	lines := strings.Split(data, "\n")
	if lines[len(lines)-1] != "" {
		t.Fatalf("GITHUB_ENV does not end in a newline: %q", data)
	}
	lines = lines[:len(lines)-1]
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		eq, hd := strings.Index(line, "="), strings.Index(line, "<<")
		if hd >= 0 && (eq < 0 || hd < eq) {
			name, delim := line[:hd], line[hd+2:]
			delims = append(delims, delim)
			var body []string
			for i++; ; i++ {
				if i >= len(lines) {
					t.Fatalf("heredoc for %s never ends (delimiter %q)", name, delim)
				}
				if lines[i] == delim {
					break
				}
				body = append(body, lines[i])
			}
			vars[name] = strings.Join(body, "\n")
			continue
		}
		if eq < 0 {
			t.Fatalf("GITHUB_ENV line %q is neither NAME=VALUE nor a heredoc", line)
		}
		vars[line[:eq]] = line[eq+1:]
	}
	return vars, delims
}

// maskWatcher records stdout and, for each ::add-mask:: written, whether
// GITHUB_ENV already held a secret at that moment.
type maskWatcher struct {
	bytes.Buffer
	envFile   string
	lateMasks int
}

func (m *maskWatcher) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("::add-mask::")) {
		if data, _ := os.ReadFile(m.envFile); strings.Contains(string(data), "<<") {
			m.lateMasks++
		}
	}
	return m.Buffer.Write(p)
}

func TestOutputGitHub(t *testing.T) {
	secretNames := map[string]bool{
		"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
		"CLOUDSDK_AUTH_ACCESS_TOKEN": true, "GOOGLE_OAUTH_ACCESS_TOKEN": true, "FERRY_TOKEN": true, "GH_TOKEN": true,
	}
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			res := r.res()
			envFile := filepath.Join(t.TempDir(), "github_env")
			// Earlier steps' variables stay: the format appends.
			if err := os.WriteFile(envFile, []byte("EARLIER=kept\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out := &maskWatcher{envFile: envFile}
			if err := Output(out, res, "github", envOf(map[string]string{"GITHUB_ENV": envFile})); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(envFile)
			if err != nil {
				t.Fatal(err)
			}
			got, delims := parseGitHubEnv(t, string(data))
			want := wantVars(res)
			want["EARLIER"] = "kept"
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GITHUB_ENV holds\n %v\nwant\n %v", got, want)
			}
			if len(delims) != len(wantVars(res)) || len(slices.Compact(slices.Sorted(slices.Values(delims)))) != len(delims) {
				t.Errorf("heredoc delimiters are not one fresh one per variable: %q", delims)
			}

			// Every secret is masked, before it is written; nothing else is.
			var masks []string
			var rest []string
			for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
				if m, ok := strings.CutPrefix(line, "::add-mask::"); ok {
					masks = append(masks, m)
				} else {
					rest = append(rest, line)
				}
			}
			for name, value := range wantVars(res) {
				if masked := slices.Contains(masks, value); masked != secretNames[name] {
					t.Errorf("%s masked = %v, want %v", name, masked, secretNames[name])
				}
			}
			if out.lateMasks > 0 {
				t.Errorf("%d masks were printed after GITHUB_ENV held the secrets", out.lateMasks)
			}
			if len(rest) != 1 || !strings.Contains(rest[0], res.Policy) || !strings.Contains(rest[0], "2026-11-23T10:15:00Z") {
				t.Errorf("summary line: %q, want one naming the policy and the UTC expiry", rest)
			}
		})
	}
}

func TestOutputGitHubCreatesEnvFilePrivately(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "github_env")
	if err := Output(&bytes.Buffer{}, tokenResult(), "github", envOf(map[string]string{"GITHUB_ENV": envFile})); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("GITHUB_ENV created with mode %v, readable by others", perm)
	}
}

func TestOutputGitHubUnwritableEnvFile(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "missing-dir", "github_env")
	err := Output(&bytes.Buffer{}, awsResult(), "github", envOf(map[string]string{"GITHUB_ENV": envFile}))
	if err == nil || !strings.Contains(err.Error(), "GITHUB_ENV") {
		t.Errorf("error = %v, want one naming GITHUB_ENV", err)
	}
}

// Hostile values must come back intact from GITHUB_ENV and never reach the
// log unmasked: the runner masks line by line, and a raw newline in
// ::add-mask:: would print the rest of the secret as plain output.
func TestOutputGitHubHostileValues(t *testing.T) {
	for _, h := range hostile {
		t.Run(h, func(t *testing.T) {
			res := tokenResult()
			res.Token.Token = h
			envFile := filepath.Join(t.TempDir(), "github_env")
			var out bytes.Buffer
			if err := Output(&out, res, "github", envOf(map[string]string{"GITHUB_ENV": envFile})); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(envFile)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := parseGitHubEnv(t, string(data))
			if got["FERRY_TOKEN"] != h {
				t.Errorf("FERRY_TOKEN = %q, want %q", got["FERRY_TOKEN"], h)
			}

			// Apply the runner's reading of each stdout line: a mask
			// command's data is unescaped (%0D, %0A, %25) on runners
			// that do; any other line is printed.
			var masks []string
			var printed []string
			for _, line := range strings.Split(out.String(), "\n") {
				if m, ok := strings.CutPrefix(line, "::add-mask::"); ok {
					masks = append(masks, m, strings.NewReplacer("%0D", "\r", "%0A", "\n", "%25", "%").Replace(m))
				} else {
					printed = append(printed, line)
				}
			}
			for _, part := range strings.FieldsFunc(h, func(r rune) bool { return r == '\n' || r == '\r' }) {
				if !slices.Contains(masks, part) {
					t.Errorf("line %q of the secret is not masked; masks %q", part, masks)
				}
				for _, p := range printed {
					if strings.Contains(p, part) {
						t.Errorf("line %q of the secret printed unmasked: %q", part, p)
					}
				}
			}
			for _, m := range masks {
				if m == "" {
					t.Error("an empty ::add-mask::, which the runner refuses")
				}
			}
		})
	}
}
