package trust

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

// testIssuers are the issuer names the example policies and the demo use.
var testIssuers = LoadOptions{Issuers: []string{"github", "gitlab"}, Kinds: registry.Kinds(), Platforms: registry.Platforms()}

// mustLoad compiles policies from in-memory files, failing the test on any
// problem.
func mustLoad(t testing.TB, files map[string]string) *Set {
	t.Helper()
	set, err := LoadFiles(toBytes(files), testIssuers)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return set
}

func toBytes(files map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = []byte(v)
	}
	return out
}

// loadProblems loads files that must fail and returns the problems as
// FILE:LINE:COL: message strings.
func loadProblems(t *testing.T, files map[string]string) []string {
	t.Helper()
	set, err := LoadFiles(toBytes(files), testIssuers)
	if err == nil {
		t.Fatalf("load succeeded with %d policies; want problems", set.Len())
	}
	if set != nil {
		t.Errorf("a failed load returned a set")
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error is %T, want *LoadError: %v", err, err)
	}
	out := make([]string, len(le.Problems))
	for i, p := range le.Problems {
		out[i] = p.String()
	}
	return out
}

// claimSet builds claims from a map as a decoded JWT payload would hold
// them (numbers as json.Number).
func claimSet(t testing.TB, m map[string]any) *claims.Set {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := claims.Parse(data)
	if err != nil {
		t.Fatalf("claims: %v", err)
	}
	return c
}

// sampleClaims returns one of the sample token payloads shaped like
// GitHub's and GitLab's, with edits applied (a nil value removes a claim),
// checked against the platforms' claim types.
func sampleClaims(t testing.TB, name string, edits map[string]any) *claims.Set {
	t.Helper()
	c := granttest.Claims(t, name, edits)
	if err := registry.Platforms().Check(c); err != nil {
		t.Fatalf("claims %s: %v", name, err)
	}
	return c
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}
