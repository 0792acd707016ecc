package trust

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
)

// unmatchableClaims are checked by the issuer configuration and the
// verifier, or are unique per token: a match on them is a mistake.
var unmatchableClaims = map[string]string{
	"aud": "the audience is checked against the issuer configuration",
	"exp": "token times are checked by the verifier",
	"nbf": "token times are checked by the verifier",
	"iat": "token times are checked by the verifier",
	"jti": "it is unique to every token",
}

// conditions compiles a match or deny block.
func (fp *fileParser) conditions(n *yaml.Node, what string) []*condition {
	ps, ok := fp.Pairs(n, what)
	if !ok && ps == nil {
		return nil
	}
	if len(ps) == 0 {
		fp.Errorf(n, "%s is empty", what)
		return nil
	}
	out := make([]*condition, 0, len(ps))
	for _, p := range ps {
		name := p.Key.Value
		if !claims.ValidName(name) {
			fp.Errorf(p.Key, "%s: %q is not a claim name", what, name)
			continue
		}
		if why, bad := unmatchableClaims[name]; bad {
			fp.Errorf(p.Key, "%s: claim %q cannot be matched: %s", what, name, why)
			continue
		}
		var alts []alt
		switch p.Val.Kind {
		case yaml.SequenceNode:
			if len(p.Val.Content) == 0 {
				fp.Errorf(p.Val, "%s.%s: an empty list matches nothing", what, name)
				continue
			}
			alts = make([]alt, 0, len(p.Val.Content))
			for _, e := range p.Val.Content {
				if a, ok := fp.alt(e, what+"."+name); ok {
					alts = append(alts, a)
				}
			}
		default:
			if a, ok := fp.alt(p.Val, what+"."+name); ok {
				alts = append(alts, a)
			}
		}
		if len(alts) > 0 {
			out = append(out, fp.condition(newCondition(fp.intern(name), alts)))
		}
	}
	return out
}

// alt compiles one accepted value.
func (fp *fileParser) alt(n *yaml.Node, what string) (alt, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		f, ok := fp.Fields(n, what, "regex")
		if !ok {
			return alt{}, false
		}
		r := f.Value("regex")
		if r == nil {
			fp.Errorf(n, "%s: a mapping value must be {regex: \"...\"}", what)
			return alt{}, false
		}
		expr, ok := fp.Str(r, what+" regex")
		if !ok {
			return alt{}, false
		}
		re, err := compileRegex(expr)
		if err != nil {
			fp.Errorf(r, "%s: invalid regex %q: %v", what, expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			return alt{}, false
		}
		return alt{text: expr, re: re}, true
	case yaml.ScalarNode:
	default:
		fp.Errorf(n, "%s must be a string, number, boolean, {regex: ...} or a list of them", what)
		return alt{}, false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		if strings.ContainsAny(n.Value, "*?") {
			return alt{text: fp.intern(n.Value), glob: true}, true
		}
		return alt{text: fp.intern(n.Value)}, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			fp.Errorf(n, "%s: %q is not a boolean", what, n.Value)
			return alt{}, false
		}
		return alt{text: strconv.FormatBool(b)}, true
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			fp.Errorf(n, "%s: %s is not a 64-bit integer; quote it to match it as text", what, n.Value)
			return alt{}, false
		}
		return alt{text: strconv.FormatInt(i, 10)}, true
	case "!!float":
		fp.Errorf(n, "%s: %s is a floating-point number, which cannot match claims reliably; quote it to match it as text", what, n.Value)
	case "!!null":
		fp.Errorf(n, "%s: a null value matches nothing; give a value or remove the key", what)
	default:
		fp.Errorf(n, "%s: unsupported YAML tag %s", what, n.Tag)
	}
	return alt{}, false
}

func (fp *fileParser) denyBlocks(n *yaml.Node) *denyList {
	if n.Kind != yaml.SequenceNode {
		fp.Errorf(n, "deny must be a list of blocks, e.g. deny: [{event_name: pull_request_target}]")
		return nil
	}
	out := make([]denyBlock, 0, len(n.Content))
	for i, b := range n.Content {
		what := fmt.Sprintf("deny[%d]", i)
		conds := fp.conditions(b, what)
		if len(conds) == 0 {
			continue
		}
		rule := what
		if len(conds) == 1 {
			rule = what + "." + conds[0].claim
		}
		out = append(out, denyBlock{index: i, rule: rule, conds: conds})
	}
	return fp.denies(out)
}

// pinsIdentity reports whether any match condition binds the token to a
// known repository, project or owner (see the package documentation).
func (fp *fileParser) pinsIdentity(conds []*condition) bool {
	for _, c := range conds {
		if pin, ok := fp.opts.Platforms.Pin(c.claim); ok && c.pins(pin.Path) {
			return true
		}
	}
	return false
}

func (fp *fileParser) unpinnedDetail(conds []*condition) string {
	var bad []string
	for _, c := range conds {
		if _, ok := fp.opts.Platforms.Pin(c.claim); ok {
			bad = append(bad, c.String())
		}
	}
	if len(bad) == 0 {
		return "none of these keys is present"
	}
	return strings.Join(bad, "; ") + " pins nothing"
}
