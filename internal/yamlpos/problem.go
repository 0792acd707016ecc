// Package yamlpos reads YAML files whose every problem must be reported
// where it is, as FILE:LINE:COL: message: Ferry's config and its trust
// policies. It holds the one document reader (with yaml.v3's line
// numbers corrected), the problem type and its order, and a node reader
// that records problems as it goes instead of stopping at the first.
package yamlpos

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a file.
type Problem struct {
	File      string
	Line, Col int    // 1-based; 0 when unknown (Line 0: the file as a whole)
	Path      string // the key path, e.g. "issuers[0].name"; "" when the message names it
	Message   string
}

// String renders the problem as FILE:LINE:COL: [PATH: ]MESSAGE, leaving out
// what is unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Sort puts problems in reading order: by file, then line, then column,
// whole-file problems first; problems at one place keep their order.
func Sort(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// Join renders problems one a line.
func Join(ps []Problem) string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
