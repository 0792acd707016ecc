// Package claimtmpl is the {{claim}} templates of Ferry's grants: a grant
// field such as an AWS session policy resource or a GitHub repository name
// may hold {{repository}}, filled in from the verified token at exchange
// time. Templates are parsed once at load; rendering only substitutes, and
// every substituted value is checked for the field it lands in, never
// spliced in raw.
package claimtmpl

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// MaxValue bounds a substituted claim: longer values are not identifiers
// but payloads.
const MaxValue = 256

// Error says why a claim could not fill in a grant's template. The
// exchange refuses the request with its message.
type Error struct {
	Field  string // where the value would land, e.g. "aws.session_policy"
	Claim  string // the claim's name; "" when the problem is the whole field
	Reason string

	value   string
	present bool
}

func (e *Error) Error() string {
	switch {
	case e.Claim == "":
		return fmt.Sprintf("%s cannot be filled in: %s", e.Field, e.Reason)
	case !e.present:
		return fmt.Sprintf("claim %q cannot be used in %s: %s", e.Claim, e.Field, e.Reason)
	}
	return fmt.Sprintf("claim %q = %s cannot be used in %s: %s", e.Claim, claims.Describe(e.value), e.Field, e.Reason)
}

// FieldError is an Error about a whole rendered field (too long once
// filled in, say) rather than one claim.
func FieldError(field, reason string) *Error { return &Error{Field: field, Reason: reason} }

// ClaimError is an Error about one claim's value in a field, for fields
// with rules of their own beyond the common charset (a repository name).
func ClaimError(field, claim, value, reason string) *Error {
	return &Error{Field: field, Claim: claim, Reason: reason, value: value, present: true}
}

// Template is a string with {{claim}} holes.
type Template struct {
	parts []part
}

type part struct {
	lit   string
	claim string // "" for a literal part
}

// Parse parses s; it returns nil when s holds no template.
func Parse(s string) (*Template, error) {
	if !strings.Contains(s, "{{") {
		return nil, nil
	}
	t := &Template{}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %s is not closed with }}", claims.Describe(rest[i:]))
		}
		name := strings.Trim(rest[i+2:i+j], " \t")
		if !isName(name) {
			return nil, fmt.Errorf("template %s must name one claim: letters, digits and _ between {{ and }}", strconv.Quote(rest[i:i+j+2]))
		}
		t.parts = append(t.parts, part{claim: name})
		rest = rest[i+j+2:]
	}
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// String renders the template as written, in its normal form.
func (t *Template) String() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.claim != "" {
			b.WriteString("{{" + p.claim + "}}")
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// Claims lists the claims the template reads, in order.
func (t *Template) Claims() []string {
	var out []string
	for _, p := range t.parts {
		if p.claim != "" {
			out = append(out, p.claim)
		}
	}
	return out
}

// Render fills in the template, checking every substituted value for
// field; a failure is an *Error.
func (t *Template) Render(field string, c *claims.Set) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.claim == "" {
			b.WriteString(p.lit)
			continue
		}
		v, err := Value(field, p.claim, c)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// Value returns the claim's text if it is safe to place in an ARN, a
// resource name, a CEL string literal, a repository name or a JWT claim.
func Value(field, claim string, c *claims.Set) (string, error) {
	v, ok := c.Get(claim)
	if !ok {
		return "", &Error{Field: field, Claim: claim, Reason: "the token does not carry it"}
	}
	if reason := unsafeValue(v.Text); reason != "" {
		return "", &Error{Field: field, Claim: claim, Reason: reason, value: v.Text, present: true}
	}
	return v.Text, nil
}

// unsafeValue says what makes s unfit to substitute, or "" if it is fine.
// The charset is what repository paths, refs and ids use; it leaves out
// every wildcard (* ?), quote, escape and separator that could widen an
// ARN or resource pattern or break out of a string.
func unsafeValue(s string) string {
	if s == "" {
		return "it is empty"
	}
	if len(s) > MaxValue {
		return fmt.Sprintf("it is longer than %d characters", MaxValue)
	}
	for _, r := range s {
		switch {
		case r == '_' || r == '.' || r == '@' || r == '/' || r == '+' || r == '=' || r == ',' || r == ':' || r == '-':
		case r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return "contains whitespace or a control character"
		default:
			return "contains " + strconv.Quote(string(r))
		}
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." {
			return `contains a ".." path segment`
		}
	}
	return ""
}

// Read reads a string node that may hold templates, recording a problem
// for a malformed one.
func Read(r *yamlpos.Reader, n *yaml.Node, what string) (string, *Template, bool) {
	s, ok := r.Str(n, what)
	if !ok {
		return "", nil, false
	}
	t, err := Parse(s)
	if err != nil {
		r.Errorf(n, "%s: %v", what, err)
		return "", nil, false
	}
	return s, t, true
}

// Literal reads a string node that must not hold a template.
func Literal(r *yamlpos.Reader, n *yaml.Node, what string) (string, bool) {
	s, ok := r.Str(n, what)
	if ok && strings.Contains(s, "{{") {
		r.Errorf(n, "%s cannot use {{claim}} templates", what)
		return "", false
	}
	return s, ok
}
