package devissuer

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// samples are token payloads shaped like GitHub's and GitLab's (see
// claims/README.md for the platforms' quirks they reproduce).
//
//go:embed claims/*.json
var samples embed.FS

// signedAtIssue are the claims Sign fills per token, so a sample never
// carries stale placeholders for them.
var signedAtIssue = []string{"iss", "iat", "nbf", "exp", "jti"}

// SampleClaims returns the named sample payload (e.g. "github-push-main")
// as a fresh map, without iss, iat, nbf, exp and jti, which Sign fills.
// Numbers are json.Number, so ids keep their exact digits.
func SampleClaims(name string) (map[string]any, error) {
	if strings.ContainsAny(name, `/\.`) {
		return nil, fmt.Errorf("sample claims %q: not a sample name", name)
	}
	data, err := samples.ReadFile("claims/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("sample claims %q: unknown sample (have %s)", name, strings.Join(SampleNames(), ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("sample claims %q: %w", name, err)
	}
	for _, c := range signedAtIssue {
		delete(claims, c)
	}
	return claims, nil
}

// SampleNames lists the sample payloads, sorted.
func SampleNames() []string {
	entries, err := fs.Glob(samples, "claims/*.json")
	if err != nil {
		// Glob fails only on a malformed pattern, which is a constant here.
		panic(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(path.Base(e), ".json"))
	}
	sort.Strings(names)
	return names
}
