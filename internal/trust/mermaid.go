package trust

import (
	"fmt"
	"sort"
	"strings"
	"unicode"

	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// BlastMermaid draws the set's blast radius as a Mermaid flowchart, in a
// Markdown ```mermaid block that GitHub renders in a pull request comment:
// each issuer, the repositories or projects its tokens must come from (a
// policy's identity pins, together), the policy, and the credential it
// grants. Identities and credentials that several policies share are one
// node, so a repository that reaches two roles, or a role that two
// policies reach, shows as such. A pin that is a pattern — the widest
// reach, every repository it matches including ones created later — is
// marked; so is a policy with blast-radius warnings.
//
// Every label is text from policy files, which a pull request may have
// written: it is quoted and escaped (quotes, #, &, <, >, backticks and
// control characters as Mermaid's #NN; codes), so no value can close a
// label, add a node or an edge, or inject HTML. Node ids are generated.
func BlastMermaid(set *Set) string {
	g := newMermaidGraph()
	for _, p := range set.Policies() {
		is := g.node("issuer", "issuer "+p.Issuer, p.Issuer)
		who, wide := p.identityLines(set)
		id := g.node("who", strings.Join(who, "\n"), p.Issuer+"\x00"+strings.Join(who, "\x00"))
		if wide {
			g.mark(id, "wide")
		}
		pol := "policy " + p.Name
		warnings := len(p.exposure(set.platforms).Warnings)
		if warnings > 0 {
			pol += fmt.Sprintf("\n%d blast-radius warnings", warnings)
		}
		pn := g.node("policy", pol, p.Name)
		if warnings > 0 {
			g.mark(pn, "warned")
		}
		t := p.Grant.Target()
		cn := g.node("credential", p.Grant.Kind()+"\n"+t.Credential, p.Grant.Kind()+"\x00"+t.Credential)
		g.edge(is, id, "")
		g.edge(id, pn, "")
		g.edge(pn, cn, "up to "+yamlpos.FormatDuration(p.Grant.MaxDuration()))
	}
	return g.String()
}

// identityLines are the policy's conditions on identity pins, one line
// each, and whether any is a pattern.
func (p *Policy) identityLines(set *Set) (lines []string, wide bool) {
	for _, c := range p.match {
		if _, pin := set.platforms.Pin(c.claim); !pin {
			continue
		}
		line := clip(c.String(), maxMermaidLine)
		if !c.exact() {
			wide = true
			line = "⚠ widest: " + line
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		lines = []string{"any repository"} // not loadable today; drawn honestly all the same
		wide = true
	}
	return lines, wide
}

// maxMermaidLine keeps a node readable: a 500-item list or a long regex is
// cut, with an ellipsis.
const maxMermaidLine = 120

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// mermaidShapes open and close each kind of node: issuers are stadiums,
// identities rectangles, policies hexagons, credentials rounded.
var mermaidShapes = map[string][2]string{
	"issuer":     {`(["`, `"])`},
	"who":        {`["`, `"]`},
	"policy":     {`{{"`, `"}}`},
	"credential": {`("`, `")`},
}

// mermaidClasses style the nodes; GitHub's renderer honours classDef.
var mermaidClasses = []struct{ name, style string }{
	{"issuer", "fill:#e8eefc,stroke:#4a6fb5"},
	{"who", "fill:#f4f4f4,stroke:#888"},
	{"wide", "fill:#fde2e1,stroke:#c62828,stroke-width:3px"},
	{"policy", "fill:#fff8dc,stroke:#b8860b"},
	{"warned", "fill:#ffe9c7,stroke:#e65100,stroke-width:2px"},
	{"credential", "fill:#e3f4e3,stroke:#2e7d32"},
}

type mermaidNode struct {
	id, kind, label string
	classes         []string
}

type mermaidGraph struct {
	nodes []*mermaidNode
	byKey map[string]*mermaidNode
	edges []string
	seen  map[string]bool
}

func newMermaidGraph() *mermaidGraph {
	return &mermaidGraph{byKey: map[string]*mermaidNode{}, seen: map[string]bool{}}
}

// node returns the id of the node of that kind and key, adding it with
// label the first time.
func (g *mermaidGraph) node(kind, label, key string) string {
	k := kind + "\x00" + key
	if n, ok := g.byKey[k]; ok {
		return n.id
	}
	n := &mermaidNode{id: fmt.Sprintf("%s%d", kind[:1], len(g.nodes)), kind: kind, label: label, classes: []string{kind}}
	g.nodes = append(g.nodes, n)
	g.byKey[k] = n
	return n.id
}

func (g *mermaidGraph) mark(id, class string) {
	for _, n := range g.nodes {
		if n.id == id && !contains(n.classes, class) {
			n.classes = append(n.classes, class)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// edge adds from --> to once; label is the broker's own text (a
// duration), never a policy's.
func (g *mermaidGraph) edge(from, to, label string) {
	e := "  " + from + " --> " + to
	if label != "" {
		e = "  " + from + " -->|" + label + "| " + to
	}
	if !g.seen[e] {
		g.seen[e] = true
		g.edges = append(g.edges, e)
	}
}

func (g *mermaidGraph) String() string {
	var b strings.Builder
	b.WriteString("```mermaid\nflowchart LR\n")
	b.WriteString("  %% ferry policy blast-radius: issuer --> repositories or projects --> policy --> credential\n")
	for _, c := range mermaidClasses {
		fmt.Fprintf(&b, "  classDef %s %s\n", c.name, c.style)
	}
	for _, n := range g.nodes {
		s := mermaidShapes[n.kind]
		fmt.Fprintf(&b, "  %s%s%s%s\n", n.id, s[0], mermaidLabel(n.label), s[1])
	}
	for _, e := range g.edges {
		b.WriteString(e + "\n")
	}
	byClass := map[string][]string{}
	for _, n := range g.nodes {
		for _, c := range n.classes {
			byClass[c] = append(byClass[c], n.id)
		}
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	// Later class lines win where styles overlap: wide and warned last.
	sort.SliceStable(classes, func(i, j int) bool { return rank(classes[i]) < rank(classes[j]) })
	for _, c := range classes {
		fmt.Fprintf(&b, "  class %s %s\n", strings.Join(byClass[c], ","), c)
	}
	b.WriteString("```\n")
	return b.String()
}

func rank(class string) int {
	if class == "wide" || class == "warned" {
		return 1
	}
	return 0
}

// mermaidLabel escapes text for a quoted Mermaid label: the characters
// that could end the quote, start an entity, open HTML or Markdown become
// Mermaid's #NN; codes, control characters become spaces, and line breaks
// of our own become <br/>.
func mermaidLabel(s string) string {
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		var b strings.Builder
		for _, r := range line {
			switch {
			case r == '"', r == '#', r == '&', r == '<', r == '>', r == '`', r == '%', r == '\\':
				fmt.Fprintf(&b, "#%d;", r)
			case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
				b.WriteByte(' ')
			default:
				b.WriteRune(r)
			}
		}
		lines[i] = b.String()
	}
	return strings.Join(lines, "<br/>")
}
