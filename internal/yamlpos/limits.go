package yamlpos

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Bounded records a problem at every list or mapping in the tree under n
// (n included) that holds more than max entries, and reports whether
// there was none. Every list and mapping of a file is checked in this one
// walk, so no reader of a particular list has to remember to. The
// problem's path names where the collection is ("match.event_name",
// "deny[2]").
func (r *Reader) Bounded(n *yaml.Node, max int) bool {
	before := r.Count()
	r.bounded(n, "", max)
	return r.Count() == before
}

func (r *Reader) bounded(n *yaml.Node, path string, max int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			r.bounded(c, path, max)
		}
	case yaml.SequenceNode:
		if len(n.Content) > max {
			r.tooMany(n, path, "a list", "items", len(n.Content), max)
		}
		for i, c := range n.Content {
			r.bounded(c, path+"["+strconv.Itoa(i)+"]", max)
		}
	case yaml.MappingNode:
		if pairs := len(n.Content) / 2; pairs > max {
			r.tooMany(n, path, "a mapping", "keys", pairs, max)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if path != "" {
				key = path + "." + key
			}
			r.bounded(n.Content[i+1], key, max)
		}
	}
}

func (r *Reader) tooMany(n *yaml.Node, path, what, unit string, got, max int) {
	p := Problem{File: r.File, Line: max1(n.Line), Col: max1(n.Column), Path: path,
		Message: fmt.Sprintf("%s of %d %s is over the limit of %d", what, got, unit, max)}
	r.Add(p)
}

func max1(v int) int { return max(v, 1) }
