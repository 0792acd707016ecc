package trust

import (
	"strconv"
	"strings"
)

// shared holds one copy of what the policies of one load repeat. Compiled
// policies are read-only, so sharing a condition or a glob between them is
// safe, and it is what keeps ten thousand policies of one shape small.
type shared struct {
	strs  map[string]string
	conds map[string]*condition
	// kinds is what grant kinds share through yamlpos.Reader.Share.
	kinds map[string]any
}

func newShared() *shared {
	return &shared{strs: map[string]string{}, conds: map[string]*condition{}, kinds: map[string]any{}}
}

// intern returns the one copy of s this load keeps.
func (fp *fileParser) intern(s string) string {
	if v, ok := fp.shared.strs[s]; ok {
		return v
	}
	fp.shared.strs[s] = s
	return s
}

// glob compiles pattern; a glob is its pattern, so the load's one copy of
// the text is all it holds.
func (fp *fileParser) glob(pattern string) glob { return compileGlob(fp.intern(pattern)) }

// condition returns the load's one copy of a condition equal to c: same
// rule, claim and alternatives, in order.
func (fp *fileParser) condition(c *condition) *condition {
	var key strings.Builder
	key.WriteString(c.rule)
	for _, a := range c.alts {
		key.WriteByte(0)
		key.WriteString(strconv.Itoa(int(a.kind)))
		key.WriteString(a.text)
	}
	if have, ok := fp.shared.conds[key.String()]; ok {
		return have
	}
	fp.shared.conds[key.String()] = c
	return c
}
