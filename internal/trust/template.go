package trust

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/ferry-broker/ferry/internal/claims"
)

// maxTemplateValue bounds a substituted claim: longer values are not
// identifiers but payloads.
const maxTemplateValue = 256

// maxSessionPolicy is STS's limit on a packed inline session policy.
const maxSessionPolicy = 2048

// TemplateError says why a claim could not fill in a grant's {{claim}}
// template. The exchange refuses the request with its message.
type TemplateError struct {
	Field  string // where the value would land, e.g. "aws.session_policy"
	Claim  string // the claim's name; "" when the problem is the whole field
	Reason string

	value   string
	present bool
}

func (e *TemplateError) Error() string {
	switch {
	case e.Claim == "":
		return fmt.Sprintf("%s cannot be filled in: %s", e.Field, e.Reason)
	case !e.present:
		return fmt.Sprintf("claim %q cannot be used in %s: %s", e.Claim, e.Field, e.Reason)
	}
	return fmt.Sprintf("claim %q = %s cannot be used in %s: %s", e.Claim, claims.Describe(e.value), e.Field, e.Reason)
}

// tmpl is a string with {{claim}} holes, parsed once at load.
type tmpl struct {
	parts []tmplPart
}

type tmplPart struct {
	lit   string
	claim string // "" for a literal part
}

// parseTemplate parses s; it returns nil when s holds no template.
func parseTemplate(s string) (*tmpl, error) {
	if !strings.Contains(s, "{{") {
		return nil, nil
	}
	t := &tmpl{}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, tmplPart{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %s is not closed with }}", claims.Describe(rest[i:]))
		}
		inner := rest[i+2 : i+j]
		name := strings.Trim(inner, " \t")
		if !isTemplateName(name) {
			return nil, fmt.Errorf("template %s must name one claim: letters, digits and _ between {{ and }}", strconv.Quote(rest[i:i+j+2]))
		}
		t.parts = append(t.parts, tmplPart{claim: name})
		rest = rest[i+j+2:]
	}
}

func isTemplateName(s string) bool {
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
func (t *tmpl) String() string {
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

// claimNames lists the claims the template reads.
func (t *tmpl) claimNames() []string {
	var out []string
	for _, p := range t.parts {
		if p.claim != "" {
			out = append(out, p.claim)
		}
	}
	return out
}

// render fills in the template, validating every substituted value for
// field.
func (t *tmpl) render(field string, c *claims.Set) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.claim == "" {
			b.WriteString(p.lit)
			continue
		}
		v, err := templateValue(field, p.claim, c)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// templateValue returns the claim's text if it is safe to place in an ARN,
// resource name, CEL string literal or JWT claim.
func templateValue(field, claim string, c *claims.Set) (string, error) {
	v, ok := c.Get(claim)
	if !ok {
		return "", &TemplateError{Field: field, Claim: claim, Reason: "the token does not carry it"}
	}
	if reason := unsafeValue(v.Text); reason != "" {
		return "", &TemplateError{Field: field, Claim: claim, Reason: reason, value: v.Text, present: true}
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
	if len(s) > maxTemplateValue {
		return fmt.Sprintf("it is longer than %d characters", maxTemplateValue)
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

// The session policy is held as an ordered JSON tree so that templates are
// filled into string leaves and the result is marshalled, never spliced.
type (
	jsonValue  any
	jsonObject []jsonMember
	jsonArray  []jsonValue
	jsonString struct {
		s string
		t *tmpl // nil for a literal
	}
	jsonLiteral string // a number, true, false or null, already valid JSON
)

type jsonMember struct {
	key string
	val jsonValue
}

// encodeJSON writes v compactly; with c nil, templates are written as is.
func encodeJSON(buf *bytes.Buffer, v jsonValue, field string, c *claims.Set) error {
	switch x := v.(type) {
	case jsonObject:
		buf.WriteByte('{')
		for i, m := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, m.key)
			buf.WriteByte(':')
			if err := encodeJSON(buf, m.val, field, c); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case jsonArray:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeJSON(buf, e, field, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case jsonString:
		s := x.s
		if x.t != nil && c != nil {
			var err error
			if s, err = x.t.render(field, c); err != nil {
				return err
			}
		}
		writeJSONString(buf, s)
	case jsonLiteral:
		buf.WriteString(string(x))
	default:
		return fmt.Errorf("unexpected JSON node %T", v)
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	// Encoding a string cannot fail.
	_ = enc.Encode(s)
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// hasTemplate reports whether any string leaf of v holds a template.
func hasTemplate(v jsonValue) bool {
	switch x := v.(type) {
	case jsonObject:
		for _, m := range x {
			if hasTemplate(m.val) {
				return true
			}
		}
	case jsonArray:
		for _, e := range x {
			if hasTemplate(e) {
				return true
			}
		}
	case jsonString:
		return x.t != nil
	}
	return false
}

// grantTemplates are the grant's fields that hold templates, kept parsed so
// Render only substitutes.
type grantTemplates struct {
	sessionPolicy jsonValue     // nil unless it holds a template
	resources     map[int]*tmpl // access_boundary index -> available_resource
	expressions   map[int]*tmpl // access_boundary index -> condition.expression
	extra         map[string]*tmpl
}

// Render returns the policy's grant with every {{claim}} template filled in
// from c. A claim that is missing or unsafe for its field is a
// *TemplateError. A grant without templates is returned as is: treat it as
// read-only.
func (p *Policy) Render(c *claims.Set) (Grant, error) {
	if p.tmpl == nil {
		return p.Grant, nil
	}
	t := p.tmpl
	switch {
	case p.Grant.AWS != nil:
		g := *p.Grant.AWS
		if t.sessionPolicy != nil {
			var buf bytes.Buffer
			if err := encodeJSON(&buf, t.sessionPolicy, "aws.session_policy", c); err != nil {
				return Grant{}, err
			}
			if buf.Len() > maxSessionPolicy {
				return Grant{}, &TemplateError{Field: "aws.session_policy",
					Reason: fmt.Sprintf("it would be %d characters once filled in, over STS's limit of %d", buf.Len(), maxSessionPolicy)}
			}
			g.SessionPolicy = buf.String()
		}
		return Grant{AWS: &g}, nil
	case p.Grant.GCP != nil:
		g := *p.Grant.GCP
		g.AccessBoundary = make([]AccessBoundaryRule, len(p.Grant.GCP.AccessBoundary))
		for i, r := range p.Grant.GCP.AccessBoundary {
			if rt := t.resources[i]; rt != nil {
				s, err := rt.render(fmt.Sprintf("gcp.access_boundary[%d].available_resource", i), c)
				if err != nil {
					return Grant{}, err
				}
				r.AvailableResource = s
			}
			if et := t.expressions[i]; et != nil {
				s, err := et.render(fmt.Sprintf("gcp.access_boundary[%d].condition.expression", i), c)
				if err != nil {
					return Grant{}, err
				}
				cond := *r.Condition
				cond.Expression = s
				r.Condition = &cond
			}
			g.AccessBoundary[i] = r
		}
		return Grant{GCP: &g}, nil
	case p.Grant.Token != nil:
		g := *p.Grant.Token
		g.Extra = make(map[string]string, len(p.Grant.Token.Extra))
		for name, v := range p.Grant.Token.Extra {
			if et := t.extra[name]; et != nil {
				s, err := et.render("token.extra_claims."+name, c)
				if err != nil {
					return Grant{}, err
				}
				v = s
			}
			g.Extra[name] = v
		}
		return Grant{Token: &g}, nil
	}
	return p.Grant, nil
}

// templateInStringLiteral reports whether every template in a CEL
// expression sits inside a quoted string literal: a substituted value can
// then only ever be string data, never CEL syntax.
func templateInStringLiteral(expr string) bool {
	var quote byte
	for i := 0; i < len(expr); i++ {
		ch := expr[i]
		switch {
		case quote != 0 && ch == '\\':
			i++
		case quote != 0 && ch == quote:
			quote = 0
		case quote == 0 && (ch == '"' || ch == '\''):
			quote = ch
		case quote == 0 && ch == '{' && i+1 < len(expr) && expr[i+1] == '{':
			return false
		}
	}
	return true
}
