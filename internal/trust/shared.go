package trust

import (
	"strconv"
	"strings"
)

// shared holds one copy of what the policies of one load repeat. Compiled
// policies are read-only, so sharing a condition or a glob between them is
// safe, and it is what keeps ten thousand policies of one shape small.
type shared struct {
	strs   map[string]string
	conds  map[string]*condition
	denies map[string]*denyList
	// kinds is what grant kinds share through yamlpos.Reader.Share.
	kinds map[string]any
}

func newShared() *shared {
	return &shared{strs: map[string]string{}, conds: map[string]*condition{}, denies: map[string]*denyList{}, kinds: map[string]any{}}
}

// intern returns the one copy of s this load keeps.
func (fp *fileParser) intern(s string) string {
	if v, ok := fp.shared.strs[s]; ok {
		return v
	}
	fp.shared.strs[s] = s
	return s
}

// condition returns the load's one copy of a condition equal to c: same
// claim and alternatives, in order.
func (fp *fileParser) condition(c *condition) *condition {
	key := conditionKey(c)
	if have, ok := fp.shared.conds[key]; ok {
		return have
	}
	fp.shared.conds[key] = c
	return c
}

// conditionKey is the text two conditions share when they are equal.
func conditionKey(c *condition) string {
	var key strings.Builder
	writeConditionKey(&key, c)
	return key.String()
}

func writeConditionKey(key *strings.Builder, c *condition) {
	key.WriteString(c.claim)
	for _, a := range c.alts() {
		key.WriteByte(0)
		key.WriteString(strconv.Itoa(int(a.kind())))
		key.WriteString(a.text)
	}
}

// denies returns the load's one copy of a deny list equal to blocks: the
// same blocks, at the same places, with equal conditions in order.
func (fp *fileParser) denies(blocks []denyBlock) *denyList {
	if len(blocks) == 0 {
		return nil
	}
	var key strings.Builder
	for _, b := range blocks {
		key.WriteString(strconv.Itoa(b.index))
		for _, c := range b.conds {
			key.WriteByte(1)
			writeConditionKey(&key, c)
		}
		key.WriteByte(2)
	}
	if have, ok := fp.shared.denies[key.String()]; ok {
		return have
	}
	l := &denyList{blocks: blocks}
	fp.shared.denies[key.String()] = l
	return l
}
