package trust

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
)

// TestResult is the outcome of one case of a policy's test file.
//
// A test file, NAME.test.yaml beside NAME.yaml, reads:
//
//	policy: deploy-prod        # optional: defaults to the policy in NAME.yaml
//	claims:                    # optional: claims every case starts from
//	  repository: acme/app
//	  ref: refs/heads/main
//	cases:
//	  - name: push to main is allowed
//	    issuer: github         # optional: defaults to the policy's issuer
//	    claims: {event_name: push}   # merged over the base; null removes a claim
//	    expect: allow          # allow | deny
//	  - name: pull_request_target is refused
//	    claims: {event_name: pull_request_target}
//	    expect: deny
//	    rule: deny[0]          # optional: the deciding rule, or a prefix of it up to "."
//
// A case is decided as the exchange decides it: Authorize, then, when that
// allows, Render, whose failure is a denial by rule "grant".
type TestResult struct {
	File      string // the test file
	Line, Col int    // where the case starts
	Policy    string
	Case      string
	Expect    string // "allow" or "deny"
	Rule      string // the rule expected, "" when the case names none
	Got       Decision
	Passed    bool
	Message   string // why the case failed; "" when it passed
}

// RunTests runs every *.test.yaml and *.test.yml in dir against set. Test
// files that cannot be run are reported as a *LoadError; the results of the
// others are returned all the same.
func RunTests(dir string, set *Set) ([]TestResult, error) {
	files, problems := readDir(dir, func(name string) bool {
		return isTestFile(name) && !strings.HasPrefix(name, ".")
	}, "read test file")
	var results []TestResult
	for _, path := range slices.Sorted(maps.Keys(files)) {
		rs, ps := runTestFile(path, files[path], set)
		results = append(results, rs...)
		problems = append(problems, ps...)
	}
	if len(problems) > 0 {
		return results, loadError(problems)
	}
	return results, nil
}

// testCase is one parsed case.
type testCase struct {
	node   *yaml.Node
	name   string
	issuer string
	claims *claims.Set
	expect string
	rule   string
}

// runTestFile parses a whole test file first and runs it only if it has no
// problems, so a half-broken file never reports half its cases as passing.
func runTestFile(path string, data []byte, set *Set) ([]TestResult, []Problem) {
	fp := newFileParser(path, LoadOptions{Platforms: set.platforms}, nil)
	top := fp.document(data)
	if top == nil {
		return nil, fp.Problems()
	}
	f, _ := fp.Fields(top, "the test file", "policy", "claims", "cases")
	if f == nil {
		return nil, fp.Problems()
	}

	pol := policyForTestFile(path, set)
	if e, ok := f["policy"]; ok {
		if name, ok := fp.Str(e.Val, "policy"); ok {
			if pol, ok = set.Lookup(name); !ok {
				fp.Errorf(e.Val, "policy %q is not loaded (a policy with problems is not loaded either)", name)
			}
		}
	} else if pol == nil {
		fp.Errorf(top, "no policy for this test file: add %s or set policy: NAME", testBase(path)+".yaml")
	}

	base := map[string]any{}
	if e, ok := f["claims"]; ok {
		fp.claimMap(e.Val, "claims", base)
	}

	var cases []testCase
	if e, ok := f["cases"]; !ok {
		fp.Errorf(top, "cases is required: a list of {name, claims, expect}")
	} else if e.Val.Kind != yaml.SequenceNode || len(e.Val.Content) == 0 {
		fp.Errorf(e.Val, "cases must be a non-empty list of {name, claims, expect}")
	} else {
		for i, cn := range e.Val.Content {
			if tc, ok := fp.testCase(cn, i, base, pol); ok {
				cases = append(cases, tc)
			}
		}
	}
	if fp.Count() > 0 || pol == nil {
		return nil, fp.Problems()
	}

	results := make([]TestResult, 0, len(cases))
	for _, tc := range cases {
		got := set.Decide(tc.issuer, pol.Name, tc.claims)
		r := TestResult{File: path, Line: tc.node.Line, Col: tc.node.Column, Policy: pol.Name, Case: tc.name,
			Expect: tc.expect, Rule: tc.rule, Got: got}
		gotWord := "deny"
		if got.Allowed {
			gotWord = "allow"
		}
		switch {
		case gotWord != tc.expect:
			r.Message = fmt.Sprintf("expected %s, got %s by rule %s: %s", tc.expect, gotWord, got.Rule, got.Reason)
		case tc.rule != "" && !ruleMatches(tc.rule, got.Rule):
			r.Message = fmt.Sprintf("expected rule %s, got rule %s: %s", tc.rule, got.Rule, got.Reason)
		default:
			r.Passed = true
		}
		results = append(results, r)
	}
	return results, nil
}

func testBase(path string) string {
	b := filepath.Base(path)
	b = strings.TrimSuffix(strings.TrimSuffix(b, ".yml"), ".yaml")
	return strings.TrimSuffix(b, ".test")
}

// policyForTestFile finds the policy loaded from NAME.yaml or NAME.yml
// beside NAME.test.yaml, or else the policy named NAME.
func policyForTestFile(path string, set *Set) *Policy {
	base := testBase(path)
	dir := filepath.Clean(filepath.Dir(path))
	for _, p := range set.Policies() {
		if filepath.Clean(p.dir) != dir {
			continue
		}
		switch p.base {
		case base + ".yaml", base + ".yml":
			return p
		}
	}
	p, _ := set.Lookup(base)
	return p
}

// ruleMatches accepts the exact rule or a prefix of it that ends where a
// rule part ends: "deny[0]" accepts "deny[0].event_name".
func ruleMatches(want, got string) bool {
	return want == got || strings.HasPrefix(got, want+".")
}

func (fp *fileParser) testCase(n *yaml.Node, i int, base map[string]any, pol *Policy) (testCase, bool) {
	what := fmt.Sprintf("cases[%d]", i)
	before := fp.Count()
	f, _ := fp.Fields(n, what, "name", "issuer", "claims", "expect", "rule")
	if f == nil {
		return testCase{}, false
	}
	tc := testCase{node: n}
	if e, ok := f["name"]; ok {
		tc.name, _ = fp.Str(e.Val, what+".name")
	} else {
		fp.Errorf(n, "%s.name is required: say what the case shows", what)
	}
	if pol != nil {
		tc.issuer = pol.Issuer
	}
	if e, ok := f["issuer"]; ok {
		tc.issuer, _ = fp.Str(e.Val, what+".issuer")
	}
	if e, ok := f["expect"]; !ok {
		fp.Errorf(n, "%s.expect is required: allow or deny", what)
	} else if s, ok := fp.Str(e.Val, what+".expect"); ok {
		if s != "allow" && s != "deny" {
			fp.Errorf(e.Val, "%s.expect %q must be allow or deny", what, s)
		}
		tc.expect = s
	}
	if e, ok := f["rule"]; ok {
		tc.rule, _ = fp.Str(e.Val, what+".rule")
	}
	raw := make(map[string]any, len(base))
	for k, v := range base {
		raw[k] = v
	}
	if e, ok := f["claims"]; ok {
		fp.claimMap(e.Val, what+".claims", raw)
	}
	for k, v := range raw {
		if v == nil {
			delete(raw, k)
		}
	}
	cs, err := claims.FromMap(raw)
	if err == nil {
		err = fp.opts.Platforms.Check(cs)
	}
	if err != nil {
		fp.Errorf(n, "%s.claims: %v", what, err)
	}
	tc.claims = cs
	return tc, fp.Count() == before
}

// claimMap merges a YAML mapping of claims into into; a null value marks
// the claim for removal.
func (fp *fileParser) claimMap(n *yaml.Node, what string, into map[string]any) {
	ps, _ := fp.Pairs(n, what)
	for _, p := range ps {
		v, err := yamlToAny(p.Val)
		if err != nil {
			fp.Errorf(p.Val, "%s.%s: %v", what, p.Key.Value, err)
			continue
		}
		into[p.Key.Value] = v
	}
}

// yamlToAny converts YAML to the values encoding/json would decode, with
// numbers as json.Number, as claims.FromMap expects.
func yamlToAny(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			err := n.Decode(&b)
			return b, err
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				return nil, err
			}
			return json.Number(strconv.FormatInt(i, 10)), nil
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, err
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := yamlToAny(e)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := yamlToAny(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[n.Content[i].Value] = v
		}
		return out, nil
	}
	return nil, errors.New("unsupported YAML value")
}
