// Package claims holds a verified CI token's claims, converted once at the
// edge into typed scalar values, so that nothing downstream handles
// map[string]any and every rule sees the same normalised form.
package claims

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Kind is the JSON type a claim arrived as.
type Kind uint8

const (
	String Kind = iota + 1
	Bool
	Number
	// List and Object are claims that are not scalars: they never match a
	// rule, and Get does not return them, but Kind reports them so that a
	// platform can refuse, say, a repository sent as a list.
	List
	Object
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Bool:
		return "boolean"
	case Number:
		return "number"
	case List:
		return "list"
	case Object:
		return "object"
	}
	return "unknown"
}

// Value is one scalar claim. Text is its canonical text form: strings as
// sent, booleans as "true"/"false", numbers as their JSON literal. GitHub
// sends every custom claim as a string while GitLab sends some ids as
// numbers, so matching compares Text and a rule written either way works
// for both platforms.
type Value struct {
	Text string
	Kind Kind
}

// jwtStrings are the registered JWT claims that must be strings. Which
// platform claims must be strings or integer ids is the platform's
// business (internal/platform): a Set only records what type each claim
// arrived as.
var jwtStrings = map[string]bool{"sub": true, "iss": true, "jti": true}

// Pair is one claim as text, as the audit log records the claims that
// identify a job.
type Pair struct {
	Name, Value string
}

// Set is the verified claims of one token.
type Set struct {
	Issuer    string
	Subject   string
	Audience  []string
	ID        string // jti
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time

	values map[string]Value
	shapes map[string]Kind // claims that are lists or objects
}

// TypeError reports a claim of the wrong JSON type.
type TypeError struct {
	Claim string
	Want  string
	Got   string
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("claim %q must be %s, got %s", e.Claim, e.Want, e.Got)
}

// setTime sets the registered time claim name (exp, nbf or iat).
func (s *Set) setTime(name string, t time.Time) {
	switch name {
	case "exp":
		s.Expiry = t
	case "nbf":
		s.NotBefore = t
	case "iat":
		s.IssuedAt = t
	}
}

// FromMap builds a Set from decoded JSON (numbers as json.Number or float64).
func FromMap(raw map[string]any) (*Set, error) {
	s := &Set{values: make(map[string]Value, len(raw)), shapes: map[string]Kind{}}
	for name, v := range raw {
		switch name {
		case "aud":
			aud, err := audience(v)
			if err != nil {
				return nil, err
			}
			s.Audience = aud
			continue
		case "exp", "nbf", "iat":
			t, err := numericDate(name, v)
			if err != nil {
				return nil, err
			}
			s.setTime(name, t)
			continue
		}
		val, kind, err := scalar(name, v)
		if err != nil {
			return nil, err
		}
		switch kind {
		case List, Object:
			s.shapes[name] = kind
		case String, Bool, Number:
			s.values[name] = val
		}
	}
	s.Issuer = s.values["iss"].Text
	s.Subject = s.values["sub"].Text
	s.ID = s.values["jti"].Text
	return s, nil
}

// scalar converts one decoded claim. Kind 0 is a null, which carries no
// value: the claim is treated as absent.
func scalar(name string, v any) (Value, Kind, error) {
	var val Value
	switch x := v.(type) {
	case string:
		val = Value{Text: x, Kind: String}
	case bool:
		val = Value{Text: fmt.Sprint(x), Kind: Bool}
	case json.Number:
		val = Value{Text: x.String(), Kind: Number}
	case float64:
		val = Value{Text: json.Number(fmt.Sprint(x)).String(), Kind: Number}
	case nil:
		return Value{}, 0, nil
	case []any:
		val.Kind = List
	default:
		val.Kind = Object
	}
	if jwtStrings[name] && val.Kind != String {
		return Value{}, 0, &TypeError{Claim: name, Want: "a string", Got: val.Kind.String()}
	}
	return val, val.Kind, nil
}

// IsInteger reports whether s is the text of an unsigned integer id of at
// most 20 digits.
func IsInteger(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func audience(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, &TypeError{Claim: "aud", Want: "a string or list of strings", Got: "a list holding " + jsonType(e)}
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, &TypeError{Claim: "aud", Want: "a string or list of strings", Got: jsonType(v)}
}

func numericDate(name string, v any) (time.Time, error) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		n, err := x.Float64()
		if err != nil {
			return time.Time{}, &TypeError{Claim: name, Want: "a number", Got: "number " + x.String()}
		}
		f = n
	case float64:
		f = x
	default:
		return time.Time{}, &TypeError{Claim: name, Want: "a number", Got: jsonType(v)}
	}
	return numericDateSeconds(name, f)
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// Kind returns the JSON type the claim arrived as, 0 when the token did
// not carry it (or carried null).
func (s *Set) Kind(name string) Kind {
	if s == nil {
		return 0
	}
	if v, ok := s.values[name]; ok {
		return v.Kind
	}
	return s.shapes[name]
}

// Get returns the claim of that name, if the token carried it as a scalar.
func (s *Set) Get(name string) (Value, bool) {
	if s == nil {
		return Value{}, false
	}
	v, ok := s.values[name]
	return v, ok
}

// Text returns the claim's text, or "" when absent.
func (s *Set) Text(name string) string {
	v, _ := s.Get(name)
	return v.Text
}

// EachName calls fn with the name of every claim present, scalar or not,
// in no order; it allocates nothing.
func (s *Set) EachName(fn func(name string)) {
	for n := range s.values {
		fn(n)
	}
	for n := range s.shapes {
		fn(n)
	}
}

// Names lists every claim present, scalar or not, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.values)+len(s.shapes))
	for n := range s.values {
		names = append(names, n)
	}
	for n := range s.shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HasAudience reports whether aud holds any of want.
func (s *Set) HasAudience(want []string) bool {
	for _, a := range s.Audience {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}

// Describe renders a value for an error message: quoted and cut short, so a
// hostile claim cannot flood a log line.
func Describe(v string) string {
	const max = 80
	if len(v) > max {
		v = v[:max] + "…"
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(v, "?"))
}

// ValidName reports whether s can name a claim in a policy: 1 to 128 of
// [A-Za-z0-9_.:/=+@-], what GitHub's and GitLab's claim names use and then
// some, but no space, quote or wildcard.
func ValidName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_.:/=+@-", c) >= 0:
		default:
			return false
		}
	}
	return true
}
