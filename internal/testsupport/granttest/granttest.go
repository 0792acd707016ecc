// Package granttest runs a grant kind's policy block parser on its own, for
// the kinds' tests: a test per limit, at the kind.
package granttest

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// Parse reads src, the YAML of one grant block (the value of grant.KIND),
// with kind. It returns the spec, nil when there were problems, and the
// problems as "LINE:COL: message".
func Parse(t testing.TB, kind grant.Kind, src string) (grant.Spec, []string) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("test YAML: %v", err)
	}
	if len(doc.Content) != 1 {
		t.Fatalf("test YAML holds no block:\n%s", src)
	}
	r := &yamlpos.Reader{File: "p.yaml"}
	spec := kind.Parse(r, doc.Content[0])
	var problems []string
	for _, p := range r.Problems() {
		problems = append(problems, p.String())
	}
	if (spec == nil) == (len(problems) == 0) {
		t.Fatalf("Parse returned spec %v with problems %q: want exactly one of them", spec, problems)
	}
	return spec, problems
}

// MustParse is Parse that fails the test on any problem.
func MustParse(t testing.TB, kind grant.Kind, src string) grant.Spec {
	t.Helper()
	spec, problems := Parse(t, kind, src)
	if len(problems) > 0 {
		t.Fatalf("problems: %q", problems)
	}
	return spec
}

// Claims returns one of the sample token payloads (see devissuer), with
// edits applied (a nil value removes a claim).
func Claims(t testing.TB, sample string, edits map[string]any) *claims.Set {
	t.Helper()
	m, err := devissuer.SampleClaims(sample)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range edits {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	c, err := claims.FromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Check loads each case, named by its key and holding the YAML of a grant
// block and the one problem loading it must report ("" when it loads), as
// a subtest.
func Check(t *testing.T, kind grant.Kind, cases map[string][2]string) {
	t.Helper()
	for name, c := range cases {
		src, want := c[0], c[1]
		t.Run(name, func(t *testing.T) {
			_, problems := Parse(t, kind, src)
			switch {
			case want == "" && len(problems) > 0:
				t.Errorf("refused: %q", problems)
			case want != "" && (len(problems) != 1 || problems[0] != want):
				t.Errorf("problems %q, want %q", problems, want)
			}
		})
	}
}
