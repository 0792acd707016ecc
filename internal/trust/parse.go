package trust

import (
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// fileParser reads one policy or test file, collecting every problem it
// finds.
type fileParser struct {
	yamlpos.Reader
	opts LoadOptions
	// shared interns what many policies repeat (claim names, rule names,
	// values such as refs/heads/main, whole conditions such as
	// deny: [{actor: "*[bot]"}]), across every file of one load, so ten
	// thousand policies hold each once.
	shared *shared

	nameLine, nameCol int
}

func newFileParser(path string, opts LoadOptions, sh *shared) *fileParser {
	if sh == nil {
		sh = newShared()
	}
	return &fileParser{Reader: yamlpos.Reader{File: path, Shared: sh.kinds}, opts: opts, shared: sh}
}

// document reads the file's one YAML document, recording a problem when it
// is empty, not one document, malformed, or uses anchors and aliases. It
// returns the top node, or nil after a problem.
func (fp *fileParser) document(data []byte) *yaml.Node {
	docs, syntax := yamlpos.Documents(fp.File, data, 1)
	switch {
	case syntax != nil:
		fp.Add(*syntax)
		return nil
	case len(docs) > 1:
		fp.Errorf(docs[1], "a file holds one YAML document; remove the second")
		return nil
	case len(docs) == 0 || yamlpos.Root(docs[0]) == nil:
		fp.Errorf(nil, "file is empty")
		return nil
	}
	top := yamlpos.Root(docs[0])
	if n := yamlpos.FindAlias(top); n != nil {
		fp.Errorf(n, "YAML anchors and aliases are not supported: write each value out")
		return nil
	}
	return top
}

// parse reads and compiles one policy file. It returns nil when the file
// has problems.
func (fp *fileParser) parse(data []byte) *Policy {
	if len(data) > MaxFileBytes {
		fp.Add(Problem{File: fp.File, Message: tooBig(int64(len(data))).Error()})
		return nil
	}
	top := fp.document(data)
	if top == nil || !fp.Bounded(top, MaxListItems) {
		return nil
	}
	f, _ := fp.Fields(top, "the policy", "name", "description", "issuer", "match", "deny", "grant")
	if f == nil {
		return nil
	}
	dir, base := filepath.Split(fp.File)
	// The base is copied, so that the whole path it was cut from is not
	// kept for it.
	p := &Policy{dir: fp.intern(dir), base: strings.Clone(base)}
	p.Name = strings.TrimSuffix(strings.TrimSuffix(p.base, ".yaml"), ".yml")
	fp.nameLine, fp.nameCol = 1, 1
	if n := f.Value("name"); n != nil {
		fp.nameLine, fp.nameCol = n.Line, n.Column
		if s, ok := fp.Str(n, "name"); ok {
			p.Name = s
			if !policyName.MatchString(s) {
				fp.Errorf(n, "name %q must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", s)
			}
		}
	} else if !policyName.MatchString(p.Name) {
		fp.Errorf(top, "name %q (from the file name) must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit; rename the file or set name:", p.Name)
	}
	if n := f.Value("description"); n != nil {
		p.Description, _ = fp.Str(n, "description")
	}

	if n := f.Value("issuer"); n != nil {
		if s, ok := fp.Str(n, "issuer"); ok {
			p.Issuer = s
			switch {
			case s == "":
				fp.Errorf(n, "issuer must name a configured issuer, e.g. github")
			case fp.opts.Issuers != nil && !slices.Contains(fp.opts.Issuers, s):
				fp.Errorf(n, "issuer %q is not configured (configured: %s)", s, strings.Join(fp.opts.Issuers, ", "))
			}
		}
	} else {
		fp.Errorf(top, "issuer is required: name the configured issuer whose tokens this policy accepts, e.g. issuer: github")
	}

	pins := fp.opts.Platforms.PinList()
	if e, ok := f["match"]; ok {
		before := fp.Count()
		p.match = fp.conditions(e.Val, "match")
		// Only a match block that compiled cleanly is judged for pinning:
		// otherwise the missing key is usually the one just reported.
		if fp.Count() == before && !fp.pinsIdentity(p.match) {
			fp.Errorf(e.Key, "match pins no repository or project identity: every repository on the platform could reach this policy. Add %s with an exact value, or a pattern whose owner part is literal (%s)", pins, fp.unpinnedDetail(p.match))
		}
	} else {
		fp.Errorf(top, "match is required: the claims a token must carry, at least one of %s", pins)
	}

	if n := f.Value("deny"); n != nil {
		p.deny = fp.denyBlocks(n)
	}

	if n := f.Value("grant"); n != nil {
		p.Grant = fp.grant(n)
	} else {
		fp.Errorf(top, "grant is required: one of %s", orList(fp.opts.Kinds.Names()))
	}

	if fp.Count() > 0 {
		return nil
	}
	return p
}

// grant reads the grant block: exactly one kind's block, parsed by its
// kind.
func (fp *fileParser) grant(n *yaml.Node) grant.Spec {
	names := fp.opts.Kinds.Names()
	f, _ := fp.Fields(n, "grant", names...)
	if f == nil {
		return nil
	}
	var blocks []yamlpos.KV
	for _, kv := range f {
		blocks = append(blocks, kv)
	}
	// The second grant in the file is the one reported.
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].Key.Line < blocks[j].Key.Line })
	switch len(blocks) {
	case 0:
		fp.Errorf(n, "grant needs one of %s", orList(names))
		return nil
	case 1:
	default:
		fp.Errorf(blocks[1].Key, "grant holds both %s and %s: a policy grants exactly one credential", blocks[0].Key.Value, blocks[1].Key.Value)
		return nil
	}
	kind, _ := fp.opts.Kinds.Lookup(blocks[0].Key.Value)
	return kind.Parse(&fp.Reader, blocks[0].Val)
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
