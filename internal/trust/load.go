package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// LoadOptions tunes validation to the broker's configuration.
type LoadOptions struct {
	// Issuers are the configured issuers' names; a policy naming another
	// is an error. nil skips the check (for `ferry policy validate`
	// without a config).
	Issuers []string
}

// Problem is one thing wrong with a policy or test file.
type Problem struct {
	File      string
	Line, Col int // 1-based; 0 when the problem is the file as a whole
	Message   string
}

// String renders the problem as FILE:LINE:COL: message.
func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Message)
}

// LoadError lists every problem found while loading; no policy of a set
// with problems is used.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// isTestFile reports whether name is a policy's test file, which the
// policy loader skips.
func isTestFile(name string) bool {
	return strings.HasSuffix(name, ".test.yaml") || strings.HasSuffix(name, ".test.yml")
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// IsPolicyFile reports whether LoadDir reads a file of this name: YAML,
// not a test file, not hidden (editors' and Kubernetes' own files).
func IsPolicyFile(name string) bool {
	return isYAML(name) && !isTestFile(name) && !strings.HasPrefix(name, ".")
}

// LoadDir loads every *.yaml and *.yml policy in dir (not its
// subdirectories, and not *.test.yaml), validates and compiles them. On
// any problem it returns a *LoadError and no Set.
func LoadDir(dir string, opts LoadOptions) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &LoadError{Problems: []Problem{{File: dir, Message: fmt.Sprintf("read policy directory: %v", pathErr(err))}}}
	}
	files := map[string][]byte{}
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !IsPolicyFile(name) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, Problem{File: path, Message: fmt.Sprintf("read policy: %v", pathErr(err))})
			continue
		}
		files[path] = data
	}
	set, err := LoadFiles(files, opts)
	var le *LoadError
	if errors.As(err, &le) {
		problems = append(problems, le.Problems...)
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &LoadError{Problems: problems}
	}
	return set, nil
}

// pathErr drops the path os errors repeat, since Problem names the file.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// LoadFiles compiles policies from file contents keyed by path (the path
// names the file in problems and gives the default policy name). It is
// LoadDir without the file system, for tests, fuzzing and benchmarks.
func LoadFiles(files map[string][]byte, opts LoadOptions) (*Set, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var problems []Problem
	byName := make(map[string]*Policy, len(files))
	for _, path := range paths {
		fp := &fileParser{file: path, issuers: opts.Issuers}
		p := fp.parse(files[path])
		problems = append(problems, fp.problems...)
		if p == nil {
			continue
		}
		if prev, dup := byName[p.Name]; dup {
			problems = append(problems, Problem{File: path, Line: fp.nameLine, Col: fp.nameCol,
				Message: fmt.Sprintf("policy name %q is already used by %s", p.Name, prev.File)})
			continue
		}
		byName[p.Name] = p
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &LoadError{Problems: problems}
	}
	return newSet(byName), nil
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
}

var (
	policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	claimName  = regexp.MustCompile(`^[A-Za-z0-9_.:/=+@-]{1,128}$`)
	roleARN    = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	// Service account emails: NAME@PROJECT.iam.gserviceaccount.com, and
	// Google-managed forms such as N-compute@developer.gserviceaccount.com.
	serviceAccount = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}@(?:[a-z0-9][a-z0-9-]*\.)+gserviceaccount\.com$`)
	yamlLine       = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
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

// reservedJWTClaims are set by Ferry's token signer itself.
var reservedJWTClaims = map[string]bool{"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true}

// fileParser reads one policy file, collecting every problem it finds.
type fileParser struct {
	file     string
	issuers  []string // nil: not checked
	problems []Problem

	nameLine, nameCol int
}

func (fp *fileParser) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	fp.problems = append(fp.problems, Problem{File: fp.file, Line: line, Col: col, Message: fmt.Sprintf(format, args...)})
}

// parseDocument decodes one YAML document, reporting syntax errors with
// their position. It returns the top node, or nil after a problem.
func parseDocument(data []byte, report func(line, col int, msg string)) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			report(1, 1, "file is empty")
			return nil
		}
		line, msg := yamlErrorPosition(err)
		report(line, 1, "YAML: "+msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		report(max(extra.Line, 1), max(extra.Column, 1), "a file holds one YAML document; remove the second")
		return nil
	} else if !errors.Is(err, io.EOF) {
		line, msg := yamlErrorPosition(err)
		report(line, 1, "YAML: "+msg)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		report(1, 1, "file is empty")
		return nil
	}
	top := doc.Content[0]
	if n := findAlias(top); n != nil {
		report(n.Line, n.Column, "YAML anchors and aliases are not supported: write each value out")
		return nil
	}
	return top
}

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to
// its scanner). yaml.v3 v3.0.1 reports their line 0-based, the scanner's
// 1-based; these are corrected.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlErrorPosition pulls the line out of yaml.v3's messages, which carry
// no column (the column is then 1).
func yamlErrorPosition(err error) (int, string) {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if line, err := strconv.Atoi(m[1]); err == nil && line > 0 {
			if yamlParserProblems[m[2]] {
				line++
			}
			return line, m[2]
		}
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return n
	}
	for _, c := range n.Content {
		if a := findAlias(c); a != nil {
			return a
		}
	}
	return nil
}

// kv is one key of a YAML mapping.
type kv struct {
	key, val *yaml.Node
}

// pairs returns a mapping's keys in order, reporting non-mappings,
// non-scalar keys and duplicates.
func (fp *fileParser) pairs(n *yaml.Node, what string) ([]kv, bool) {
	if n.Kind != yaml.MappingNode {
		fp.errorf(n, "%s must be a mapping of key: value", what)
		return nil, false
	}
	out := make([]kv, 0, len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			fp.errorf(k, "%s: keys must be plain names", what)
			ok = false
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			fp.errorf(k, "%s: key %q appears twice (first at line %d)", what, k.Value, prev.Line)
			ok = false
			continue
		}
		seen[k.Value] = k
		out = append(out, kv{k, v})
	}
	return out, ok
}

// fields reads a mapping with a fixed set of keys; an unknown key is an
// error that names the keys allowed.
func (fp *fileParser) fields(n *yaml.Node, what string, allowed ...string) (map[string]kv, bool) {
	ps, ok := fp.pairs(n, what)
	if !ok && ps == nil {
		return nil, false
	}
	out := make(map[string]kv, len(ps))
	for _, p := range ps {
		if !slices.Contains(allowed, p.key.Value) {
			fp.errorf(p.key, "unknown key %q in %s (allowed: %s)", p.key.Value, what, strings.Join(allowed, ", "))
			ok = false
			continue
		}
		out[p.key.Value] = p
	}
	return out, ok
}

// str reads a string scalar.
func (fp *fileParser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		fp.errorf(n, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

// strList reads a list of strings.
func (fp *fileParser) strList(n *yaml.Node, what string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		fp.errorf(n, "%s must be a list of strings", what)
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, e := range n.Content {
		s, good := fp.str(e, what+" entries")
		if good {
			out = append(out, s)
		}
		ok = ok && good
	}
	return out, ok
}

// literal reads a string that must not hold a template.
func (fp *fileParser) literal(n *yaml.Node, what string) (string, bool) {
	s, ok := fp.str(n, what)
	if ok && strings.Contains(s, "{{") {
		fp.errorf(n, "%s cannot use {{claim}} templates", what)
		return "", false
	}
	return s, ok
}

// template reads a string that may hold templates.
func (fp *fileParser) template(n *yaml.Node, what string) (string, *tmpl, bool) {
	s, ok := fp.str(n, what)
	if !ok {
		return "", nil, false
	}
	t, err := parseTemplate(s)
	if err != nil {
		fp.errorf(n, "%s: %v", what, err)
		return "", nil, false
	}
	return s, t, true
}

func (fp *fileParser) duration(n *yaml.Node, what string, min, max, def time.Duration) time.Duration {
	if n == nil {
		return def
	}
	s, ok := fp.str(n, what)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		fp.errorf(n, "%s %q is not a duration such as 15m or 1h", what, s)
		return def
	}
	if d < min || d > max {
		fp.errorf(n, "%s %s is out of range: allowed %s..%s", what, s, FormatDuration(min), FormatDuration(max))
		return def
	}
	return d
}

// FormatDuration writes a duration as policies do: 15m rather than 15m0s,
// 1h rather than 1h0m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parse reads and compiles one policy file. It returns nil when the file
// has problems.
func (fp *fileParser) parse(data []byte) *Policy {
	top := parseDocument(data, func(line, col int, msg string) {
		fp.problems = append(fp.problems, Problem{File: fp.file, Line: line, Col: col, Message: msg})
	})
	if top == nil {
		return nil
	}
	f, _ := fp.fields(top, "the policy", "name", "description", "issuer", "match", "deny", "grant")
	if f == nil {
		return nil
	}
	p := &Policy{File: fp.file}

	base := filepath.Base(fp.file)
	p.Name = strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
	fp.nameLine, fp.nameCol = 1, 1
	if n, ok := f["name"]; ok {
		fp.nameLine, fp.nameCol = n.val.Line, n.val.Column
		if s, ok := fp.str(n.val, "name"); ok {
			p.Name = s
			if !policyName.MatchString(s) {
				fp.errorf(n.val, "name %q must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", s)
			}
		}
	} else if !policyName.MatchString(p.Name) {
		fp.errorf(top, "name %q (from the file name) must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit; rename the file or set name:", p.Name)
	}
	if n, ok := f["description"]; ok {
		p.Description, _ = fp.str(n.val, "description")
	}

	if n, ok := f["issuer"]; ok {
		if s, ok := fp.str(n.val, "issuer"); ok {
			p.Issuer = s
			switch {
			case s == "":
				fp.errorf(n.val, "issuer must name a configured issuer, e.g. github")
			case fp.issuers != nil && !slices.Contains(fp.issuers, s):
				fp.errorf(n.val, "issuer %q is not configured (configured: %s)", s, strings.Join(fp.issuers, ", "))
			}
		}
	} else {
		fp.errorf(top, "issuer is required: name the configured issuer whose tokens this policy accepts, e.g. issuer: github")
	}

	if n, ok := f["match"]; ok {
		before := len(fp.problems)
		p.match = fp.conditions(n.val, "match", "match.")
		// Only a match block that compiled cleanly is judged for pinning:
		// otherwise the missing key is usually the one just reported.
		if len(fp.problems) == before && !pinsIdentity(p.match) {
			fp.errorf(n.key, "match pins no repository or project identity: every repository on the platform could reach this policy. Add %s with an exact value, or a pattern whose owner part is literal (%s)", identityKeyList, unpinnedDetail(p.match))
		}
	} else {
		fp.errorf(top, "match is required: the claims a token must carry, at least one of %s", identityKeyList)
	}

	if n, ok := f["deny"]; ok {
		p.deny = fp.denyBlocks(n.val)
	}

	if n, ok := f["grant"]; ok {
		fp.grant(n.val, p)
	} else {
		fp.errorf(top, "grant is required: one of aws, gcp or token")
	}

	if len(fp.problems) > 0 {
		return nil
	}
	p.allowReason = fmt.Sprintf("claims satisfy policy %q", p.Name)
	return p
}

func pinsIdentity(conds []*condition) bool {
	for _, c := range conds {
		if c.pins() {
			return true
		}
	}
	return false
}

func unpinnedDetail(conds []*condition) string {
	var bad []string
	for _, c := range conds {
		if identityKeys[c.claim] {
			bad = append(bad, c.String())
		}
	}
	if len(bad) == 0 {
		return "none of these keys is present"
	}
	return strings.Join(bad, "; ") + " pins nothing"
}

// conditions compiles a match or deny block.
func (fp *fileParser) conditions(n *yaml.Node, what, rulePrefix string) []*condition {
	ps, ok := fp.pairs(n, what)
	if !ok && ps == nil {
		return nil
	}
	if len(ps) == 0 {
		fp.errorf(n, "%s is empty", what)
		return nil
	}
	out := make([]*condition, 0, len(ps))
	for _, p := range ps {
		name := p.key.Value
		if !claimName.MatchString(name) {
			fp.errorf(p.key, "%s: %q is not a claim name", what, name)
			continue
		}
		if why, bad := unmatchableClaims[name]; bad {
			fp.errorf(p.key, "%s: claim %q cannot be matched: %s", what, name, why)
			continue
		}
		c := &condition{claim: name, rule: rulePrefix + name}
		switch p.val.Kind {
		case yaml.SequenceNode:
			if len(p.val.Content) == 0 {
				fp.errorf(p.val, "%s.%s: an empty list matches nothing", what, name)
				continue
			}
			for _, e := range p.val.Content {
				if a, ok := fp.alt(e, what+"."+name); ok {
					c.alts = append(c.alts, a)
				}
			}
		default:
			if a, ok := fp.alt(p.val, what+"."+name); ok {
				c.alts = append(c.alts, a)
			}
		}
		if len(c.alts) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// alt compiles one accepted value.
func (fp *fileParser) alt(n *yaml.Node, what string) (alt, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		f, ok := fp.fields(n, what, "regex")
		if !ok {
			return alt{}, false
		}
		r, has := f["regex"]
		if !has {
			fp.errorf(n, "%s: a mapping value must be {regex: \"...\"}", what)
			return alt{}, false
		}
		expr, ok := fp.str(r.val, what+" regex")
		if !ok {
			return alt{}, false
		}
		re, err := compileRegex(expr)
		if err != nil {
			fp.errorf(r.val, "%s: invalid regex %q: %v", what, expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			return alt{}, false
		}
		return alt{kind: altRegex, text: expr, re: re}, true
	case yaml.ScalarNode:
	default:
		fp.errorf(n, "%s must be a string, number, boolean, {regex: ...} or a list of them", what)
		return alt{}, false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		if strings.ContainsAny(n.Value, "*?") {
			return alt{kind: altGlob, text: n.Value, re: compileGlob(n.Value)}, true
		}
		return alt{kind: altExact, text: n.Value}, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			fp.errorf(n, "%s: %q is not a boolean", what, n.Value)
			return alt{}, false
		}
		return alt{kind: altExact, text: strconv.FormatBool(b)}, true
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			fp.errorf(n, "%s: %s is not a 64-bit integer; quote it to match it as text", what, n.Value)
			return alt{}, false
		}
		return alt{kind: altExact, text: strconv.FormatInt(i, 10)}, true
	case "!!float":
		fp.errorf(n, "%s: %s is a floating-point number, which cannot match claims reliably; quote it to match it as text", what, n.Value)
	case "!!null":
		fp.errorf(n, "%s: a null value matches nothing; give a value or remove the key", what)
	default:
		fp.errorf(n, "%s: unsupported YAML tag %s", what, n.Tag)
	}
	return alt{}, false
}

func (fp *fileParser) denyBlocks(n *yaml.Node) []denyBlock {
	if n.Kind != yaml.SequenceNode {
		fp.errorf(n, "deny must be a list of blocks, e.g. deny: [{event_name: pull_request_target}]")
		return nil
	}
	out := make([]denyBlock, 0, len(n.Content))
	for i, b := range n.Content {
		what := fmt.Sprintf("deny[%d]", i)
		conds := fp.conditions(b, what, what+".")
		if len(conds) == 0 {
			continue
		}
		rule := what
		if len(conds) == 1 {
			rule = conds[0].rule
		}
		out = append(out, denyBlock{index: i, rule: rule, conds: conds})
	}
	return out
}

func (fp *fileParser) grant(n *yaml.Node, p *Policy) {
	f, _ := fp.fields(n, "grant", "aws", "gcp", "token")
	if f == nil {
		return
	}
	var kinds []kv
	for _, k := range []string{"aws", "gcp", "token"} {
		if e, ok := f[k]; ok {
			kinds = append(kinds, e)
		}
	}
	// The second grant in the file is the one reported.
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].key.Line < kinds[j].key.Line })
	switch len(kinds) {
	case 0:
		fp.errorf(n, "grant needs one of aws, gcp or token")
		return
	case 1:
	default:
		fp.errorf(kinds[1].key, "grant holds both %s and %s: a policy grants exactly one credential", kinds[0].key.Value, kinds[1].key.Value)
		return
	}
	switch e := kinds[0]; e.key.Value {
	case "aws":
		fp.awsGrant(e.val, p)
	case "gcp":
		fp.gcpGrant(e.val, p)
	case "token":
		fp.tokenGrant(e.val, p)
	}
}

func (fp *fileParser) awsGrant(n *yaml.Node, p *Policy) {
	f, _ := fp.fields(n, "grant.aws", "role_arn", "duration", "session_policy", "session_tags")
	if f == nil {
		return
	}
	g := &AWSGrant{}
	if e, ok := f["role_arn"]; !ok {
		fp.errorf(n, "grant.aws.role_arn is required")
	} else if s, ok := fp.literal(e.val, "grant.aws.role_arn"); ok {
		g.RoleARN = s
		if !roleARN.MatchString(s) {
			fp.errorf(e.val, "grant.aws.role_arn %q is not an IAM role ARN such as arn:aws:iam::123456789012:role/NAME", s)
		}
	}
	g.Duration = fp.duration(optional(f, "duration"), "grant.aws.duration", awsMinDuration, awsMaxDuration, awsDefaultDuration)
	if e, ok := f["session_policy"]; ok {
		tree := fp.sessionPolicy(e.val)
		if tree != nil {
			var buf bytes.Buffer
			if err := encodeJSON(&buf, tree, "", nil); err != nil {
				fp.errorf(e.val, "grant.aws.session_policy: %v", err)
			}
			g.SessionPolicy = buf.String()
			if buf.Len() > maxSessionPolicy {
				fp.errorf(e.val, "grant.aws.session_policy is %d characters packed, over STS's limit of %d", buf.Len(), maxSessionPolicy)
			}
			if hasTemplate(tree) {
				p.tmpl = &grantTemplates{sessionPolicy: tree}
			}
		}
	}
	if e, ok := f["session_tags"]; ok {
		tags, _ := fp.strList(e.val, "grant.aws.session_tags")
		if len(tags) > 50 {
			fp.errorf(e.val, "grant.aws.session_tags has %d tags; STS allows at most 50", len(tags))
		}
		seen := map[string]bool{}
		for i, t := range tags {
			switch {
			case !claimName.MatchString(t):
				fp.errorf(e.val.Content[i], "grant.aws.session_tags: %q is not a claim name", t)
			case seen[t]:
				fp.errorf(e.val.Content[i], "grant.aws.session_tags: %q is listed twice", t)
			}
			seen[t] = true
		}
		g.SessionTags = tags
	}
	p.Grant.AWS = g
}

func optional(f map[string]kv, key string) *yaml.Node {
	if e, ok := f[key]; ok {
		return e.val
	}
	return nil
}

// sessionPolicy converts the inline policy, written as a YAML mapping or a
// JSON string, into a JSON tree whose string values may hold templates.
func (fp *fileParser) sessionPolicy(n *yaml.Node) jsonValue {
	const what = "grant.aws.session_policy"
	var tree jsonValue
	switch {
	case n.Kind == yaml.MappingNode:
		var ok bool
		if tree, ok = fp.yamlToJSON(n, what); !ok {
			return nil
		}
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		t, err := jsonTree(n.Value)
		if err != nil {
			fp.errorf(n, "%s is not valid JSON: %v", what, err)
			return nil
		}
		if err := checkTemplates(t); err != nil {
			fp.errorf(n, "%s: %v", what, err)
			return nil
		}
		tree = t
	default:
		fp.errorf(n, "%s must be a mapping (the policy written in YAML) or a JSON string", what)
		return nil
	}
	obj, ok := tree.(jsonObject)
	if !ok {
		fp.errorf(n, "%s must be a JSON object", what)
		return nil
	}
	for _, m := range obj {
		if m.key == "Statement" {
			return tree
		}
	}
	fp.errorf(n, "%s has no Statement", what)
	return nil
}

// yamlToJSON converts a YAML value to a JSON tree, parsing templates in
// string values.
func (fp *fileParser) yamlToJSON(n *yaml.Node, what string) (jsonValue, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		ps, ok := fp.pairs(n, what)
		obj := make(jsonObject, 0, len(ps))
		for _, p := range ps {
			if p.key.ShortTag() != "!!str" {
				fp.errorf(p.key, "%s: key %q must be a string", what, p.key.Value)
				ok = false
				continue
			}
			if strings.Contains(p.key.Value, "{{") {
				fp.errorf(p.key, "%s: templates are allowed in string values, not in keys", what)
				ok = false
				continue
			}
			v, good := fp.yamlToJSON(p.val, what)
			ok = ok && good
			obj = append(obj, jsonMember{key: p.key.Value, val: v})
		}
		return obj, ok
	case yaml.SequenceNode:
		arr := make(jsonArray, 0, len(n.Content))
		ok := true
		for _, e := range n.Content {
			v, good := fp.yamlToJSON(e, what)
			ok = ok && good
			arr = append(arr, v)
		}
		return arr, ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			t, err := parseTemplate(n.Value)
			if err != nil {
				fp.errorf(n, "%s: %v", what, err)
				return nil, false
			}
			return jsonString{s: n.Value, t: t}, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err == nil {
				return jsonLiteral(strconv.FormatBool(b)), true
			}
		case "!!int":
			var i int64
			if err := n.Decode(&i); err == nil {
				return jsonLiteral(strconv.FormatInt(i, 10)), true
			}
		case "!!float":
			var f float64
			if err := n.Decode(&f); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return jsonLiteral(strconv.FormatFloat(f, 'g', -1, 64)), true
			}
		case "!!null":
			return jsonLiteral("null"), true
		}
	}
	fp.errorf(n, "%s: %q cannot be written as JSON", what, n.Value)
	return nil, false
}

// jsonTree parses JSON text into an ordered tree.
func jsonTree(s string) (jsonValue, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	v, err := jsonNext(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected text after the JSON value")
	}
	return v, nil
}

func jsonNext(dec *json.Decoder, depth int) (jsonValue, error) {
	if depth > 64 {
		return nil, errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Delim:
		switch x {
		case '{':
			obj := jsonObject{}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				if seen[key] {
					return nil, fmt.Errorf("key %q appears twice", key)
				}
				seen[key] = true
				v, err := jsonNext(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj = append(obj, jsonMember{key: key, val: v})
			}
			_, err := dec.Token() // '}'
			return obj, err
		case '[':
			arr := jsonArray{}
			for dec.More() {
				v, err := jsonNext(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token() // ']'
			return arr, err
		}
		return nil, fmt.Errorf("unexpected %v", x)
	case string:
		t, err := parseTemplate(x)
		if err != nil {
			return nil, err
		}
		return jsonString{s: x, t: t}, nil
	case json.Number:
		return jsonLiteral(x.String()), nil
	case bool:
		return jsonLiteral(strconv.FormatBool(x)), nil
	case nil:
		return jsonLiteral("null"), nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// checkTemplates refuses templates in object keys.
func checkTemplates(v jsonValue) error {
	switch x := v.(type) {
	case jsonObject:
		for _, m := range x {
			if strings.Contains(m.key, "{{") {
				return errors.New("templates are allowed in string values, not in keys")
			}
			if err := checkTemplates(m.val); err != nil {
				return err
			}
		}
	case jsonArray:
		for _, e := range x {
			if err := checkTemplates(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fp *fileParser) gcpGrant(n *yaml.Node, p *Policy) {
	f, _ := fp.fields(n, "grant.gcp", "service_account", "scopes", "delegates", "duration", "access_boundary")
	if f == nil {
		return
	}
	g := &GCPGrant{}
	if e, ok := f["service_account"]; !ok {
		fp.errorf(n, "grant.gcp.service_account is required")
	} else if s, ok := fp.literal(e.val, "grant.gcp.service_account"); ok {
		g.ServiceAccount = s
		if !serviceAccount.MatchString(s) {
			fp.errorf(e.val, "grant.gcp.service_account %q is not a service account email such as deploy@PROJECT.iam.gserviceaccount.com", s)
		}
	}
	g.Scopes = []string{defaultGCPScope}
	if e, ok := f["scopes"]; ok {
		scopes, _ := fp.strList(e.val, "grant.gcp.scopes")
		if len(scopes) == 0 {
			fp.errorf(e.val, "grant.gcp.scopes is empty; leave it out for cloud-platform")
		}
		for i, s := range scopes {
			if !strings.HasPrefix(s, "https://") || strings.Contains(s, "{{") {
				fp.errorf(e.val.Content[i], "grant.gcp.scopes: %q is not an OAuth scope URL such as %s", s, defaultGCPScope)
			}
		}
		g.Scopes = scopes
	}
	if e, ok := f["delegates"]; ok {
		delegates, _ := fp.strList(e.val, "grant.gcp.delegates")
		for i, s := range delegates {
			if !serviceAccount.MatchString(s) {
				fp.errorf(e.val.Content[i], "grant.gcp.delegates: %q is not a service account email", s)
			}
		}
		g.Delegates = delegates
	}
	g.Duration = fp.duration(optional(f, "duration"), "grant.gcp.duration", gcpMinDuration, gcpMaxDuration, gcpDefaultDuration)
	if e, ok := f["access_boundary"]; ok {
		g.AccessBoundary = fp.accessBoundary(e.val, p)
	}
	p.Grant.GCP = g
}

// maxBoundaryRules is Google's limit on rules in one access boundary.
const maxBoundaryRules = 10

func (fp *fileParser) accessBoundary(n *yaml.Node, p *Policy) []AccessBoundaryRule {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		fp.errorf(n, "grant.gcp.access_boundary must be a non-empty list of rules")
		return nil
	}
	if len(n.Content) > maxBoundaryRules {
		fp.errorf(n, "grant.gcp.access_boundary has %d rules; Google allows at most %d", len(n.Content), maxBoundaryRules)
	}
	var rules []AccessBoundaryRule
	tmplFor := func() *grantTemplates {
		if p.tmpl == nil {
			p.tmpl = &grantTemplates{resources: map[int]*tmpl{}, expressions: map[int]*tmpl{}}
		}
		return p.tmpl
	}
	for i, rn := range n.Content {
		what := fmt.Sprintf("grant.gcp.access_boundary[%d]", i)
		f, _ := fp.fields(rn, what, "available_resource", "available_permissions", "condition")
		if f == nil {
			continue
		}
		var r AccessBoundaryRule
		if e, ok := f["available_resource"]; !ok {
			fp.errorf(rn, "%s.available_resource is required", what)
		} else if s, t, ok := fp.template(e.val, what+".available_resource"); ok {
			r.AvailableResource = s
			if !strings.HasPrefix(s, "//") {
				fp.errorf(e.val, "%s.available_resource %q must be a full resource name such as //storage.googleapis.com/projects/_/buckets/NAME", what, s)
			}
			if t != nil {
				tmplFor().resources[i] = t
			}
		}
		if e, ok := f["available_permissions"]; !ok {
			fp.errorf(rn, "%s.available_permissions is required", what)
		} else {
			perms, _ := fp.strList(e.val, what+".available_permissions")
			if len(perms) == 0 {
				fp.errorf(e.val, "%s.available_permissions is empty", what)
			}
			for j, s := range perms {
				if !strings.HasPrefix(s, "inRole:") || strings.Contains(s, "{{") {
					fp.errorf(e.val.Content[j], "%s.available_permissions: %q must be inRole:ROLE", what, s)
				}
			}
			r.AvailablePermissions = perms
		}
		if e, ok := f["condition"]; ok {
			cf, _ := fp.fields(e.val, what+".condition", "expression", "title", "description")
			if cf != nil {
				cond := &BoundaryCondition{}
				if x, ok := cf["expression"]; !ok {
					fp.errorf(e.val, "%s.condition.expression is required", what)
				} else if s, t, ok := fp.template(x.val, what+".condition.expression"); ok {
					cond.Expression = s
					if t != nil {
						if !templateInStringLiteral(s) {
							fp.errorf(x.val, "%s.condition.expression: a {{claim}} template must sit inside a quoted string literal", what)
						}
						tmplFor().expressions[i] = t
					}
				}
				if x, ok := cf["title"]; ok {
					cond.Title, _ = fp.literal(x.val, what+".condition.title")
				}
				if x, ok := cf["description"]; ok {
					cond.Description, _ = fp.literal(x.val, what+".condition.description")
				}
				r.Condition = cond
			}
		}
		rules = append(rules, r)
	}
	return rules
}

func (fp *fileParser) tokenGrant(n *yaml.Node, p *Policy) {
	f, _ := fp.fields(n, "grant.token", "audience", "duration", "claims", "extra_claims")
	if f == nil {
		return
	}
	g := &TokenGrant{}
	if e, ok := f["audience"]; !ok {
		fp.errorf(n, "grant.token.audience is required: the service that accepts the token")
	} else if s, ok := fp.literal(e.val, "grant.token.audience"); ok {
		g.Audience = s
		if strings.TrimSpace(s) == "" {
			fp.errorf(e.val, "grant.token.audience is empty")
		}
	}
	g.Duration = fp.duration(optional(f, "duration"), "grant.token.duration", tokMinDuration, tokMaxDuration, tokDefaultDuration)
	seen := map[string]bool{}
	if e, ok := f["claims"]; ok {
		names, _ := fp.strList(e.val, "grant.token.claims")
		for i, s := range names {
			switch {
			case !claimName.MatchString(s):
				fp.errorf(e.val.Content[i], "grant.token.claims: %q is not a claim name", s)
			case reservedJWTClaims[s]:
				fp.errorf(e.val.Content[i], "grant.token.claims: %q is set by Ferry itself", s)
			case seen[s]:
				fp.errorf(e.val.Content[i], "grant.token.claims: %q is listed twice", s)
			}
			seen[s] = true
		}
		g.Claims = names
	}
	if e, ok := f["extra_claims"]; ok {
		ps, _ := fp.pairs(e.val, "grant.token.extra_claims")
		g.Extra = make(map[string]string, len(ps))
		for _, kv := range ps {
			name := kv.key.Value
			switch {
			case !claimName.MatchString(name):
				fp.errorf(kv.key, "grant.token.extra_claims: %q is not a claim name", name)
				continue
			case reservedJWTClaims[name]:
				fp.errorf(kv.key, "grant.token.extra_claims: %q is set by Ferry itself", name)
				continue
			case seen[name]:
				fp.errorf(kv.key, "grant.token.extra_claims: %q is also copied by grant.token.claims", name)
				continue
			}
			s, t, ok := fp.template(kv.val, "grant.token.extra_claims."+name)
			if !ok {
				continue
			}
			g.Extra[name] = s
			if t != nil {
				if p.tmpl == nil {
					p.tmpl = &grantTemplates{extra: map[string]*tmpl{}}
				}
				p.tmpl.extra[name] = t
			}
		}
	}
	p.Grant.Token = g
}
