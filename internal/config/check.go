package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// parseError lists every problem found in one config file, each as
// FILE:LINE:COL: PATH: MESSAGE, the way trust policy problems are.
type parseError struct {
	problems []yamlpos.Problem
}

func (e *parseError) Error() string { return "config " + yamlpos.Join(e.problems) }

// at places a problem at node n, when the checker knows it.
func at(p yamlpos.Problem, n *yaml.Node) yamlpos.Problem {
	if n != nil && p.Line == 0 {
		p.Line, p.Col = n.Line, n.Column
	}
	return p
}

// readDocument parses data as a single YAML document and returns its root
// node (nil for an empty file, which takes every default), or the problem
// that stops it.
func readDocument(file string, data []byte) (*yaml.Node, []yamlpos.Problem) {
	docs, syntax := yamlpos.Documents(file, data, 1)
	switch {
	case syntax != nil:
		return nil, []yamlpos.Problem{*syntax}
	case len(docs) == 0:
		return nil, []yamlpos.Problem{{File: file, Message: "file is empty"}}
	case len(docs) > 1:
		if second := yamlpos.Root(docs[1]); second != nil && !isNull(second) {
			return nil, []yamlpos.Problem{at(yamlpos.Problem{File: file, Message: "a config file holds one YAML document; remove the second"}, second)}
		}
	}
	return yamlpos.Root(docs[0]), nil
}

// yamlLine reads the line yaml.v3 puts in its decoding errors.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

var (
	// Go's wording in yaml.v3 type errors, for the refusals the checker
	// did not foresee.
	goNotFound  = regexp.MustCompile(`field (\S+) not found in type \S+`)
	goSetTwice  = regexp.MustCompile(`field (\S+) already set in type \S+`)
	goUnmarshal = regexp.MustCompile("cannot unmarshal (!!\\w+)(?: `[^`]*`)? into \\S+")
	goDecode    = regexp.MustCompile("cannot decode (!!\\w+)(?: `[^`]*`)? as an? (!!\\w+)")
)

// unexplained reports an error from yaml.v3's own decoding of a document
// the checker passed, with Go type names and values taken out. FuzzParse
// asserts there are none: each is a refusal the checker did not foresee.
func unexplained(file string, err error) []yamlpos.Problem {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	ps := make([]yamlpos.Problem, len(msgs))
	for i, m := range msgs {
		m = goNotFound.ReplaceAllString(m, "key $1 is not a known key")
		m = goSetTwice.ReplaceAllString(m, "key $1 appears twice")
		m = goUnmarshal.ReplaceAllString(m, "a $1 value has the wrong type here")
		m = goDecode.ReplaceAllString(m, "a $1 value cannot be read as $2")
		p := yamlpos.Problem{File: file, Message: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Message = sm[2]
		}
		ps[i] = p
	}
	return ps
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// maxVisits bounds the checker's work: aliases and merge keys can make a
// small file stand for a huge tree.
const maxVisits = 100_000

// checker walks a document against the Config struct, the way yaml.v3
// would decode it, and reports every unknown key and every value of the
// wrong type by key path and position, in words rather than Go types.
// Scalars are checked by yaml.v3 itself, so what it accepts is accepted.
type checker struct {
	file     string
	problems []yamlpos.Problem
	visits   int
	active   map[*yaml.Node]bool // mappings being walked, to refuse a merge of one into itself
}

func newChecker(file string) *checker { return &checker{file: file, active: map[*yaml.Node]bool{}} }

func (c *checker) add(n *yaml.Node, path, format string, args ...any) {
	c.problems = append(c.problems, at(yamlpos.Problem{File: c.file, Path: path, Message: fmt.Sprintf(format, args...)}, n))
}

// tick counts work done and says whether to go on.
func (c *checker) tick() bool {
	c.visits++
	if c.visits == maxVisits+1 {
		c.problems = append(c.problems, yamlpos.Problem{File: c.file, Message: "aliases expand the file to too many values"})
	}
	return c.visits <= maxVisits
}

// value checks node n (reported at its own place, even if it is an alias)
// as the value of a field of type t at path.
func (c *checker) value(n *yaml.Node, t reflect.Type, path string) {
	v := deref(n)
	if v == nil || !c.tick() {
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// Its UnmarshalYAML says what is wrong in words, without the key.
		if err := v.Decode(reflect.New(t).Interface()); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				c.add(n, path, "want %s, got %s", describe(t), got(v))
			} else {
				c.add(n, path, "%s", err.Error())
			}
		}
		return
	}
	switch {
	case t.Kind() == reflect.Struct && v.Kind == yaml.MappingNode:
		if c.active[v] {
			c.add(n, path, "an alias refers to the mapping it is in")
			return
		}
		c.active[v] = true
		c.mapping(v, t, path, map[string]*yaml.Node{}, false)
		delete(c.active, v)
		return
	case t.Kind() == reflect.Slice && v.Kind == yaml.SequenceNode:
		for i, e := range v.Content {
			c.value(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
		return
	case v.Kind == yaml.ScalarNode:
		// Includes null (~ or nothing), which leaves any field at zero.
		if v.Decode(reflect.New(t).Interface()) == nil {
			if isInt(t) && v.ShortTag() == "!!float" {
				// yaml.v3 would quietly drop the fraction of 1.5.
				var f float64
				if v.Decode(&f) == nil && f != math.Trunc(f) {
					c.add(n, path, "want %s, got %s", describe(t), got(v))
				}
			}
			return
		}
	}
	c.add(n, path, "want %s, got %s", describe(t), got(v))
}

// mapping checks the keys of mapping m against struct t. seen holds the
// keys already given; merged is true for a mapping brought in by a merge
// key (<<), whose keys yield to those given already, as in yaml.v3.
func (c *checker) mapping(m *yaml.Node, t reflect.Type, path string, seen map[string]*yaml.Node, merged bool) {
	fields := yamlFields(t)
	var merge *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !c.tick() {
			return
		}
		rawKey, val := m.Content[i], m.Content[i+1]
		if isMerge(rawKey) {
			merge = val // yaml.v3 uses the last
			continue
		}
		k := deref(rawKey)
		if k == nil || k.Kind != yaml.ScalarNode || isNull(k) {
			// yaml.v3 would drop a null key and its value without a word.
			c.add(rawKey, path, "keys must be plain names, got %s", got(k))
			continue
		}
		name := k.Value
		ft, known := fields.types[name]
		if first, again := seen[name]; again {
			if merged {
				continue
			}
			if known {
				c.add(rawKey, path, "key %s appears twice (first at line %d)", showKey(name), first.Line)
				continue
			}
		}
		seen[name] = rawKey
		if !known {
			c.add(rawKey, path, "key %s is not a known key (known keys: %s)", showKey(name), strings.Join(fields.names, ", "))
			continue
		}
		c.value(val, ft, joinPath(path, name))
	}
	if merge == nil {
		return
	}
	sources, ok := mergeSources(merge)
	if !ok {
		c.add(merge, path, "<< (merge) wants a mapping or a list of mappings, got %s", got(deref(merge)))
		return
	}
	for _, s := range sources {
		if c.active[s] {
			c.add(merge, path, "<< (merge) refers to the mapping it is in")
			continue
		}
		c.active[s] = true
		c.mapping(s, t, path, seen, true)
		delete(c.active, s)
	}
}

// mergeSources lists the mappings a merge key's value brings in, under
// yaml.v3's rules: a mapping, an alias of one, or a list of those.
func mergeSources(v *yaml.Node) ([]*yaml.Node, bool) {
	one := func(n *yaml.Node) *yaml.Node {
		switch {
		case n.Kind == yaml.MappingNode:
			return n
		case n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias.Kind == yaml.MappingNode:
			return n.Alias
		}
		return nil
	}
	if v.Kind == yaml.SequenceNode {
		out := make([]*yaml.Node, len(v.Content))
		for i, e := range v.Content {
			if out[i] = one(e); out[i] == nil {
				return nil, false
			}
		}
		return out, true
	}
	if m := one(v); m != nil {
		return []*yaml.Node{m}, true
	}
	return nil, false
}

// isMerge is yaml.v3's test for a merge key.
func isMerge(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && (n.Tag == "" || n.Tag == "!" || n.ShortTag() == "!!merge")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == 10 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type fieldSet struct {
	names []string // in declaration order
	types map[string]reflect.Type
}

// yamlFields lists the keys of struct t by their yaml tags.
func yamlFields(t reflect.Type) fieldSet {
	fs := fieldSet{types: map[string]reflect.Type{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fs.names = append(fs.names, name)
		fs.types[name] = f.Type
	}
	return fs
}

// describe names what a field of type t takes, in the words of the config
// file rather than Go's.
func describe(t reflect.Type) string {
	if t == reflect.TypeOf(Duration(0)) {
		return durationWant
	}
	switch {
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case isInt(t):
		return "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice:
		switch e := t.Elem(); {
		case e.Kind() == reflect.String:
			return "a list of strings"
		case e.Kind() == reflect.Struct:
			return "a list of " + strings.ToLower(e.Name()) + "s"
		default:
			return "a list"
		}
	case t.Kind() == reflect.Struct:
		return "a mapping (keys: " + strings.Join(yamlFields(t).names, ", ") + ")"
	}
	return "a different value"
}

// got describes what the file gave: a quoted string, a bare number or
// boolean, "a list" or "a mapping". Credentials in URLs are hidden.
func got(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!binary", "!!timestamp":
			return quote(n.Value)
		case "!!null":
			return "null"
		case "!!int", "!!float", "!!bool":
			if utf8.RuneCountInString(n.Value) <= 40 && !strings.ContainsAny(n.Value, "\"@\\ \t\r\n") {
				return n.Value
			}
		}
		return quote(n.Value)
	}
	return "nothing"
}

// quote shows a value from the file in an error: redacted, cut short, and
// quoted so that odd characters are visible.
func quote(s string) string {
	s = redact(s)
	if utf8.RuneCountInString(s) > 60 {
		r := []rune(s)
		s = string(r[:57]) + "..."
	}
	return strconv.Quote(s)
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// showKey shows a key as written when it is a plain name, else quoted.
func showKey(k string) string {
	if plainKey.MatchString(k) {
		return k
	}
	return quote(k)
}

// redact hides the user information of anything that looks like a URL with
// credentials, as a redis_url with a password does (redis://:pw@host), so
// that no error message shows a secret. Everything before the last @ of
// the authority goes: a password may itself hold @ or /.
func redact(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		start = i + len("://")
	} else if !strings.Contains(s[:at], ":") {
		return s // an address such as ci@example.com
	}
	return s[:start] + "xxxxx" + s[at:]
}

// locate finds the node a key path such as issuers[0].audiences[1] names,
// or the nearest of its parents the file has, so that problems found after
// decoding point at a line too. It returns nil when the file has none of
// it.
func locate(root *yaml.Node, path string) *yaml.Node {
	var found *yaml.Node
	n := root
	for _, seg := range pathSegment.FindAllStringSubmatch(path, -1) {
		var next *yaml.Node
		if seg[1] != "" {
			next = child(n, seg[1], 0)
		} else if v := deref(n); v != nil && v.Kind == yaml.SequenceNode {
			if i, err := strconv.Atoi(seg[2]); err == nil && i < len(v.Content) {
				next = v.Content[i]
			}
		}
		if next == nil {
			break
		}
		found, n = next, next
	}
	return found
}

var pathSegment = regexp.MustCompile(`([A-Za-z0-9_]+)|\[(\d+)\]`)

// child finds the value of key in mapping m, looking in merged mappings
// after the mapping's own keys, as yaml.v3 does.
func child(m *yaml.Node, key string, depth int) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode || depth > 10 {
		return nil
	}
	var merge *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if isMerge(m.Content[i]) {
			merge = m.Content[i+1]
			continue
		}
		if k := deref(m.Content[i]); k != nil && k.Kind == yaml.ScalarNode && k.Value == key {
			return m.Content[i+1]
		}
	}
	if merge != nil {
		sources, _ := mergeSources(merge)
		for _, s := range sources {
			if v := child(s, key, depth+1); v != nil {
				return v
			}
		}
	}
	return nil
}
