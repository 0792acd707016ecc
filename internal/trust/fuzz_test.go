package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadFiles feeds arbitrary bytes to the policy loader: it must never
// panic, and must return either a set holding the policy or a *LoadError
// whose every problem names the file and a position. A policy that loads
// must then evaluate, explain, render and size up any token without
// panicking.
func FuzzLoadFiles(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(examples, "*.yaml"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, src := range []string{
		good, denyPolicy, templated["aws.yaml"], templated["gcp.yaml"], templated["tok.yaml"], templated["awsjson.yaml"],
		"", "---", "{}", "[]", "null", "issuer: github\nmatch:\n  repository: [acme/app\n",
		"issuer: github\nmatch: &a {repository: acme/app}\ndeny: [*a]\n",
		"issuer: github\nmatch: {repository: {regex: '('}}\ngrant: {token: {audience: x}}\n",
		"issuer: github\nmatch: {repository: \"**\"}\ngrant: {token: {audience: x}}\n",
		"issuer: github\nmatch: {repository: acme/app}\ngrant: {token: {audience: x, extra_claims: {a: '{{'}}}\n",
		"issuer: github\nmatch: {repository: acme/app}\ngrant: {aws: {role_arn: 'arn:aws:iam::123456789012:role/x', session_policy: '{\"Statement\":[{{x}}]}'}}\n",
		"\xff\xfe", "issuer: !!binary aGk=\n", "? [a]\n: b\n",
	} {
		f.Add([]byte(src))
	}
	tokens := []string{"github-push-main", "github-environment-production", "github-pull-request-target", "gitlab-protected-deploy"}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := LoadFiles(map[string][]byte{"fuzz.yaml": data}, testIssuers)
		if err != nil {
			if set != nil {
				t.Fatal("a failed load returned a set")
			}
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("err = %T %v, want a *LoadError with problems", err, err)
			}
			for _, p := range le.Problems {
				if p.File != "fuzz.yaml" || p.Line < 1 || p.Col < 1 || p.Message == "" {
					t.Fatalf("problem without a position: %+v", p)
				}
				if !strings.HasPrefix(p.String(), "fuzz.yaml:") {
					t.Fatalf("problem renders as %q", p.String())
				}
			}
			return
		}
		if set.Len() != 1 {
			t.Fatalf("one file loaded as %d policies", set.Len())
		}
		p := set.Policies()[0]
		if !newFileParser("fuzz.yaml", testIssuers, nil).pinsIdentity(p.match) {
			t.Fatalf("policy %q loaded without pinning an identity", p.Name)
		}
		if p.Grant == nil || p.Grant.Kind() == "" {
			t.Fatalf("policy %q loaded without a grant", p.Name)
		}
		for _, tok := range tokens {
			c := sampleClaims(t, tok, nil)
			d := set.Authorize(p.Issuer, p.Name, c)
			dec := set.Decide(p.Issuer, p.Name, c)
			if dec.Allowed && (!d.Allowed || dec.Grant == nil) {
				t.Fatal("Decide allowed what Authorize refused, or allowed without a grant")
			}
			checks := p.Explain(p.Issuer, c)
			allPassed := true
			for _, ch := range checks[:len(checks)-1] { // the grant check is Render's
				allPassed = allPassed && ch.Passed
			}
			if allPassed != d.Allowed {
				t.Fatalf("Explain (all passed %v) disagrees with Authorize (%+v)", allPassed, d)
			}
		}
		_ = BlastRadius(set)
	})
}
