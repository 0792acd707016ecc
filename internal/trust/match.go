package trust

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"github.com/ferry-broker/ferry/internal/claims"
)

type altKind uint8

const (
	altExact altKind = iota + 1
	altGlob
	altRegex
)

// alt is one accepted value of a match key, compiled once at load. It
// holds no interface: ten thousand policies keep one or more each, and
// the kind is told by which field is set.
type alt struct {
	text string         // the exact text, or the pattern as written
	re   *regexp.Regexp // regexes only, anchored
	glob bool           // text is a glob pattern
}

func (a alt) kind() altKind {
	switch {
	case a.re != nil:
		return altRegex
	case a.glob:
		return altGlob
	}
	return altExact
}

func (a alt) matches(s string) bool {
	switch {
	case a.re != nil:
		return a.re.MatchString(s)
	case a.glob:
		return glob(a.text).MatchString(s)
	}
	return s == a.text
}

func (a alt) String() string {
	switch a.kind() {
	case altGlob:
		return "glob " + quotePattern(a.text)
	case altRegex:
		return "regex " + quotePattern(a.text)
	}
	return quotePattern(a.text)
}

// quotePattern quotes a value from a policy as its author wrote it, so a
// regex reads with single backslashes; only text that would be ambiguous
// between the quotes is Go-quoted.
func quotePattern(s string) string {
	for _, r := range s {
		if r == '"' || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return `"` + s + `"`
}

// condition is one key of a match or deny block: the claim must match any
// of its alternatives. Nearly every key has one value, so that one is kept
// in the condition itself and a list elsewhere: ten thousand policies keep
// a few conditions each, and each object is one more for the collector to
// mark. A condition does not know where it stands, so one object serves
// every block and policy of a load that has a key equal to it.
type condition struct {
	claim string
	one   [1]alt   // the alternative, when there is one
	many  *altList // the alternatives, when there are more; nil for one
}

// altList holds a key's alternatives when there are more than one, and
// for a long list a set of its exact ones, so that it costs one lookup per
// request; patterns are then the other alternatives.
type altList struct {
	alts     []alt
	set      map[string]struct{}
	patterns []alt
}

// newCondition compiles a key of claim with alts, of which there is at
// least one.
func newCondition(claim string, alts []alt) *condition {
	c := &condition{claim: claim}
	if len(alts) == 1 {
		c.one[0] = alts[0]
		return c
	}
	c.many = &altList{alts: alts}
	n := 0
	for _, a := range alts {
		if a.kind() == altExact {
			n++
		}
	}
	if n < setFrom {
		return c
	}
	c.many.set = make(map[string]struct{}, n)
	for _, a := range alts {
		if a.kind() == altExact {
			c.many.set[a.text] = struct{}{}
		} else {
			c.many.patterns = append(c.many.patterns, a)
		}
	}
	return c
}

// setFrom is how many exact alternatives make a set worth it.
const setFrom = 8

// alts returns the condition's alternatives, in the order written.
func (c *condition) alts() []alt {
	if c.many != nil {
		return c.many.alts
	}
	return c.one[:]
}

// matchRule is the rule a match key is refused by: "match.ref".
func (c *condition) matchRule() string { return "match." + c.claim }

// eval reports whether the token's claim satisfies the condition, with the
// claim's value and whether it was present at all.
func (c *condition) eval(cs *claims.Set) (ok bool, v claims.Value, present bool) {
	v, present = cs.Get(c.claim)
	if !present {
		return false, v, false
	}
	return c.matches(v.Text), v, true
}

func (c *condition) matches(s string) bool {
	if c.many == nil {
		return c.one[0].matches(s)
	}
	alts := c.many.alts
	if c.many.set != nil {
		if _, ok := c.many.set[s]; ok {
			return true
		}
		alts = c.many.patterns
	}
	for _, a := range alts {
		if a.matches(s) {
			return true
		}
	}
	return false
}

// want renders what the condition accepts: `"main"`, `glob "acme/*"`,
// `one of "push", "workflow_dispatch"`.
func (c *condition) want() string { return c.wantUpTo(len(c.alts())) }

// maxShown is how many alternatives a refusal names: it goes to the
// caller and the audit log on every request, and a thousand values would
// make each refusal kilobytes long.
const maxShown = 10

// wantUpTo is want naming at most n alternatives and counting the rest.
func (c *condition) wantUpTo(n int) string {
	alts := c.alts()
	if len(alts) == 1 {
		return alts[0].String()
	}
	parts := make([]string, 0, min(n, len(alts))+1)
	for _, a := range alts[:min(n, len(alts))] {
		parts = append(parts, a.String())
	}
	if more := len(alts) - n; more > 0 {
		parts = append(parts, fmt.Sprintf("… and %d more", more))
	}
	return "one of " + strings.Join(parts, ", ")
}

// String renders the condition for a reader: `ref = "refs/heads/main"`.
func (c *condition) String() string {
	if c.many == nil {
		switch c.one[0].kind() {
		case altExact:
			return c.claim + " = " + c.one[0].String()
		default:
			return c.claim + " matches " + c.one[0].String()
		}
	}
	return c.claim + " is " + c.want()
}

// exact reports whether every alternative is exact text.
func (c *condition) exact() bool {
	for _, a := range c.alts() {
		if a.kind() != altExact {
			return false
		}
	}
	return true
}

// failure explains, for a pipeline owner, why the condition failed.
func (c *condition) failure(policy string, v claims.Value, present bool) string {
	if !present {
		return fmt.Sprintf("claim %q is missing (policy %q requires %s)", c.claim, policy, c.wantUpTo(maxShown))
	}
	return fmt.Sprintf("claim %q = %s does not match policy %q (want %s)", c.claim, claims.Describe(v.Text), policy, c.wantUpTo(maxShown))
}

// denyList is a policy's deny blocks.
type denyList struct{ blocks []denyBlock }

// denyBlock refuses a token that satisfies every one of its conditions.
type denyBlock struct {
	index int
	rule  string // "deny[0].event_name" or "deny[1]"
	conds []*condition
}

// matches reports whether the block refuses the token.
func (d *denyBlock) matches(cs *claims.Set) bool {
	for _, c := range d.conds {
		if ok, _, _ := c.eval(cs); !ok {
			return false
		}
	}
	return true
}

// reason names the claims that made the block match.
func (d *denyBlock) reason(policy string, cs *claims.Set) string {
	parts := make([]string, len(d.conds))
	for i, c := range d.conds {
		parts[i] = c.claim + " = " + claims.Describe(cs.Text(c.claim))
	}
	return fmt.Sprintf("deny rule %d of policy %q matched: %s", d.index, policy, strings.Join(parts, ", "))
}

func (d *denyBlock) String() string {
	parts := make([]string, len(d.conds))
	for i, c := range d.conds {
		parts[i] = c.String()
	}
	return strings.Join(parts, " and ")
}

// compileRegex anchors an RE2 expression at both ends.
func compileRegex(expr string) (*regexp.Regexp, error) {
	// Compiled bare first so an error quotes the expression as written.
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// pins reports whether the condition binds the token to a known
// repository or project owner, given whether its claim is an OWNER/NAME
// path (see the package documentation).
func (c *condition) pins(path bool) bool {
	for _, a := range c.alts() {
		if !altPins(a, path) {
			return false
		}
	}
	return true
}

func altPins(a alt, path bool) bool {
	switch a.kind() {
	case altExact:
		return a.text != ""
	case altGlob:
		return path && ownerBounded(a.text[:strings.IndexAny(a.text, "*?")])
	case altRegex:
		return path && regexPins(a.text)
	}
	return false
}

// ownerBounded reports whether a literal prefix holds a whole, non-empty
// first path segment.
func ownerBounded(prefix string) bool {
	return strings.IndexByte(prefix, '/') > 0
}

// regexPins reports whether every branch of a regex starts with a literal
// owner segment. It is conservative: anything it cannot see through pins
// nothing.
func regexPins(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return false
	}
	return branchesPin(re.Simplify())
}

func branchesPin(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !branchesPin(sub) {
				return false
			}
		}
		return len(re.Sub) > 0
	case syntax.OpCapture:
		return branchesPin(re.Sub[0])
	}
	prefix, complete := literalPrefix(re)
	if complete {
		return prefix != ""
	}
	return ownerBounded(prefix)
}

// literalPrefix returns the literal text every match of re starts with,
// and whether that text is all re matches.
func literalPrefix(re *syntax.Regexp) (string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return "", false
		}
		return string(re.Rune), true
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpEndText, syntax.OpBeginLine, syntax.OpEndLine:
		return "", true
	case syntax.OpCapture:
		return literalPrefix(re.Sub[0])
	case syntax.OpConcat:
		var b strings.Builder
		for _, sub := range re.Sub {
			p, complete := literalPrefix(sub)
			b.WriteString(p)
			if !complete {
				return b.String(), false
			}
		}
		return b.String(), true
	}
	return "", false
}
