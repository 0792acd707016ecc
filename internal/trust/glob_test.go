package trust

import (
	"regexp"
	"strings"
	"testing"
)

// globRegexp is the regexp a glob means, written the obvious way: the
// reference the glob matcher is checked against.
func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '*' && i+1 < len(p) && p[i+1] == '*':
			b.WriteString(`.*`)
			i++
		case p[i] == '*':
			b.WriteString(`[^/]*`)
		case p[i] == '?':
			b.WriteString(`[^/]`)
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

func TestGlobMatchesAsItsRegexpWould(t *testing.T) {
	tests := []struct {
		pattern string
		yes, no []string
	}{
		{"acme/*", []string{"acme/app", "acme/", "acme/a.b-c"}, []string{"acme", "acme/app/x", "other/app", "xacme/app"}},
		{"acme/**", []string{"acme/app", "acme/app/x/y", "acme/"}, []string{"acme", "acm/x"}},
		{"*[bot]", []string{"dependabot[bot]", "[bot]"}, []string{"dependabot", "a/b[bot]", "bot"}},
		{"refs/heads/release-?", []string{"refs/heads/release-1"}, []string{"refs/heads/release-", "refs/heads/release-10", "refs/heads/release-/"}},
		{"**/main", []string{"refs/heads/main", "/main", "a/b/c/main"}, []string{"main", "refs/heads/main2", "refs/heads/mai"}},
		{"a*b*c", []string{"abc", "aXbYc", "abbc", "aXcbc"}, []string{"ab", "a/b/c", "acb"}},
		{"a**b*c", []string{"a/x/bYc", "abc"}, []string{"a/x/b/c"}},
		{"é?", []string{"éx", "éé"}, []string{"é", "éxy"}},
		{"***", []string{"", "a/b/c"}, nil},
		{"*", []string{"", "abc"}, []string{"a/b"}},
	}
	for _, tt := range tests {
		g, ref := glob(tt.pattern), globRegexp(tt.pattern)
		for _, s := range tt.yes {
			if !g.MatchString(s) || !ref.MatchString(s) {
				t.Errorf("%q should match %q (glob %v, regexp %v)", tt.pattern, s, g.MatchString(s), ref.MatchString(s))
			}
		}
		for _, s := range tt.no {
			if g.MatchString(s) || ref.MatchString(s) {
				t.Errorf("%q should not match %q (glob %v, regexp %v)", tt.pattern, s, g.MatchString(s), ref.MatchString(s))
			}
		}
	}
	// A pattern longer than the matcher's on-stack state set.
	long := strings.Repeat("a*", 200) + "z"
	if s := strings.Repeat("ab", 300) + "z"; !glob(long).MatchString(s) || glob(long).MatchString(s+"/") {
		t.Error("a 401-atom glob matches wrongly")
	}
}

// FuzzGlob: the matcher and the glob's regexp agree on every pattern and
// text.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"acme/*", "acme/app"}, {"**/x?", "a/b/xy"}, {"*[bot]", "a[bot]"}, {"a*b**c?", "aXb/Y/cZ"}, {"é*", "éé/"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 300 || len(s) > 300 || !utf8Valid(pattern) || !utf8Valid(s) {
			return
		}
		if got, want := glob(pattern).MatchString(s), globRegexp(pattern).MatchString(s); got != want {
			t.Fatalf("glob %q on %q: %v, its regexp says %v", pattern, s, got, want)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }
