package yamlpos

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Reader reads the nodes of one file, recording a problem at the node's
// position for everything that is wrong, so that one pass reports all of
// them. Its methods return ok == false after recording a problem.
type Reader struct {
	File string
	// Shared, when set, is kept across the files of one load: Share puts
	// what many files repeat there, so a load holds one copy.
	Shared   map[string]any
	problems []Problem
}

// Share returns the value kept under key in r.Shared, keeping v there when
// there is none. Without r.Shared it returns v. Values must be read-only.
func (r *Reader) Share(key string, v any) any {
	if r.Shared == nil {
		return v
	}
	if have, ok := r.Shared[key]; ok {
		return have
	}
	r.Shared[key] = v
	return v
}

// Errorf records a problem at n (at 1:1 when n has no position).
func (r *Reader) Errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	r.problems = append(r.problems, Problem{File: r.File, Line: line, Col: col, Message: fmt.Sprintf(format, args...)})
}

// Add records problems found elsewhere (a document's syntax error).
func (r *Reader) Add(ps ...Problem) { r.problems = append(r.problems, ps...) }

// Problems returns what was recorded, in the order found.
func (r *Reader) Problems() []Problem { return r.problems }

// Count is how many problems are recorded: compare two counts to learn
// whether a step found any.
func (r *Reader) Count() int { return len(r.problems) }

// KV is one key of a YAML mapping.
type KV struct {
	Key, Val *yaml.Node
}

// Pairs returns a mapping's keys in order, recording non-mappings,
// non-scalar keys and duplicates.
func (r *Reader) Pairs(n *yaml.Node, what string) ([]KV, bool) {
	if n.Kind != yaml.MappingNode {
		r.Errorf(n, "%s must be a mapping of key: value", what)
		return nil, false
	}
	out := make([]KV, 0, len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			r.Errorf(k, "%s: keys must be plain names", what)
			ok = false
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			r.Errorf(k, "%s: key %q appears twice (first at line %d)", what, k.Value, prev.Line)
			ok = false
			continue
		}
		seen[k.Value] = k
		out = append(out, KV{k, v})
	}
	return out, ok
}

// Fields reads a mapping with a fixed set of keys; an unknown key is a
// problem that names the keys allowed. The map is nil when n is not a
// mapping.
func (r *Reader) Fields(n *yaml.Node, what string, allowed ...string) (Fields, bool) {
	ps, ok := r.Pairs(n, what)
	if !ok && ps == nil {
		return nil, false
	}
	out := make(Fields, len(ps))
	for _, p := range ps {
		if !slices.Contains(allowed, p.Key.Value) {
			r.Errorf(p.Key, "unknown key %q in %s (allowed: %s)", p.Key.Value, what, strings.Join(allowed, ", "))
			ok = false
			continue
		}
		out[p.Key.Value] = p
	}
	return out, ok
}

// Fields are a mapping's keys by name.
type Fields map[string]KV

// Value returns the value of key, nil when the mapping lacks it.
func (f Fields) Value(key string) *yaml.Node {
	if e, ok := f[key]; ok {
		return e.Val
	}
	return nil
}

// Str reads a string scalar.
func (r *Reader) Str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		r.Errorf(n, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

// StrList reads a list of strings.
func (r *Reader) StrList(n *yaml.Node, what string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		r.Errorf(n, "%s must be a list of strings", what)
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, e := range n.Content {
		s, good := r.Str(e, what+" entries")
		if good {
			out = append(out, s)
		}
		ok = ok && good
	}
	return out, ok
}

// Duration reads an optional duration such as 15m within [min, max]; a
// missing one (n nil) or a bad one is def.
func (r *Reader) Duration(n *yaml.Node, what string, min, max, def time.Duration) time.Duration {
	if n == nil {
		return def
	}
	s, ok := r.Str(n, what)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		r.Errorf(n, "%s %q is not a duration such as 15m or 1h", what, s)
		return def
	}
	if d < min || d > max {
		r.Errorf(n, "%s %s is out of range: allowed %s..%s", what, s, FormatDuration(min), FormatDuration(max))
		return def
	}
	return d
}

// FormatDuration writes a duration as a person would in a policy: 15m
// rather than 15m0s, 1h rather than 1h0m0s.
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

// FindAlias returns the first node under n that is an alias or carries an
// anchor, nil when there is none.
func FindAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return n
	}
	for _, c := range n.Content {
		if a := FindAlias(c); a != nil {
			return a
		}
	}
	return nil
}
