package trust

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// mermaidDoc is BlastMermaid's output read back with the grammar it is
// written in; any line outside it fails the test.
type mermaidDoc struct {
	labels  map[string]string   // node id → label, entities and <br/> decoded
	shapes  map[string]string   // node id → opening bracket
	edges   map[string][]string // from → to, in order
	classes map[string][]string // class → node ids
}

var (
	mmNode    = regexp.MustCompile(`^  ([a-z][0-9]+)(\(\["|\["|\{\{"|\(")([^"]*)("\]\)|"\]|"\}\}|"\))$`)
	mmEdge    = regexp.MustCompile(`^  ([a-z][0-9]+) -->(?:\|([a-z0-9 ]+)\|)? ([a-z][0-9]+)$`)
	mmClass   = regexp.MustCompile(`^  class ([a-z][0-9]+(?:,[a-z][0-9]+)*) ([a-z]+)$`)
	mmDef     = regexp.MustCompile(`^  classDef [a-z]+ [a-z0-9:#,.-]+$`)
	mmEntity  = regexp.MustCompile(`#([0-9]+);`)
	mmClosing = map[string]string{`(["`: `"])`, `["`: `"]`, `{{"`: `"}}`, `("`: `")`}
)

func parseMermaid(t *testing.T, out string) mermaidDoc {
	t.Helper()
	d := mermaidDoc{labels: map[string]string{}, shapes: map[string]string{}, edges: map[string][]string{}, classes: map[string][]string{}}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 3 || lines[0] != "```mermaid" || lines[1] != "flowchart LR" || lines[len(lines)-1] != "```" {
		t.Fatalf("not a ```mermaid flowchart block:\n%s", out)
	}
	for _, line := range lines[2 : len(lines)-1] {
		switch {
		case strings.HasPrefix(line, "  %% "), mmDef.MatchString(line):
		case mmNode.MatchString(line):
			m := mmNode.FindStringSubmatch(line)
			if mmClosing[m[2]] != m[4] {
				t.Errorf("node %s opens with %s and closes with %s", m[1], m[2], m[4])
			}
			if _, dup := d.labels[m[1]]; dup {
				t.Errorf("node %s is declared twice", m[1])
			}
			raw := strings.ReplaceAll(m[3], "<br/>", "\n")
			if strings.ContainsAny(raw, "<>&`\\%") {
				t.Errorf("node %s has an unescaped character: %q", m[1], m[3])
			}
			d.labels[m[1]] = mmEntity.ReplaceAllStringFunc(raw, func(e string) string {
				n, _ := strconv.Atoi(mmEntity.FindStringSubmatch(e)[1])
				return string(rune(n))
			})
			d.shapes[m[1]] = m[2]
		case mmEdge.MatchString(line):
			m := mmEdge.FindStringSubmatch(line)
			d.edges[m[1]] = append(d.edges[m[1]], m[3])
		case mmClass.MatchString(line):
			m := mmClass.FindStringSubmatch(line)
			d.classes[m[2]] = append(d.classes[m[2]], strings.Split(m[1], ",")...)
		default:
			t.Errorf("line outside the grammar: %q", line)
		}
	}
	for from, tos := range d.edges {
		for _, to := range append([]string{from}, tos...) {
			if _, ok := d.labels[to]; !ok {
				t.Errorf("edge %s --> %s names an undeclared node", from, to)
			}
		}
	}
	return d
}

// find returns the id of the one node whose label contains sub.
func (d mermaidDoc) find(t *testing.T, sub string) string {
	t.Helper()
	var ids []string
	for id, l := range d.labels {
		if strings.Contains(l, sub) {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("%d nodes hold %q, want 1: %v", len(ids), sub, d.labels)
	}
	return ids[0]
}

func (d mermaidDoc) hasEdge(from, to string) bool {
	for _, x := range d.edges[from] {
		if x == to {
			return true
		}
	}
	return false
}

func (d mermaidDoc) has(class, id string) bool {
	for _, x := range d.classes[class] {
		if x == id {
			return true
		}
	}
	return false
}

func TestBlastMermaidDrawsIssuerIdentityPolicyCredential(t *testing.T) {
	set := mustLoad(t, map[string]string{
		"deploy.yaml": `issuer: github
match: {repository: acme/app, repository_id: "892345671", ref: refs/heads/main, environment: production}
grant: {aws: {role_arn: "arn:aws:iam::123456789012:role/deploy", duration: 1h}}
`,
		"deploy-too.yaml": `issuer: github
match: {repository: acme/app, repository_id: "892345671", ref: refs/heads/main, environment: staging}
grant: {aws: {role_arn: "arn:aws:iam::123456789012:role/deploy", duration: 15m}}
`,
		"artifacts.yaml": `issuer: github
match: {repository_owner: acme, repository: "acme/*"}
grant: {token: {audience: "https://artifacts.example", duration: 5m}}
`,
		"gitlab.yaml": `issuer: gitlab
match: {project_path: group/app, project_id: "42", ref: main}
grant: {token: {audience: "https://artifacts.example", duration: 5m}}
`,
	})
	d := parseMermaid(t, BlastMermaid(set))
	if len(d.labels) != 11 {
		t.Errorf("%d nodes, want 11 (2 issuers, 3 identities, 4 policies, 2 credentials): %v", len(d.labels), d.labels)
	}
	gh, gl := d.find(t, "issuer github"), d.find(t, "issuer gitlab")
	app := d.find(t, `repository = "acme/app"`)
	owner := d.find(t, `repository matches glob "acme/*"`)
	project := d.find(t, `project_path = "group/app"`)
	role := d.find(t, "role/deploy")
	deploy, deployToo := d.find(t, "policy deploy\n"), d.find(t, "policy deploy-too")
	artifacts, gitlab := d.find(t, "policy artifacts"), d.find(t, "policy gitlab")
	store := d.find(t, "https://artifacts.example")
	// One node for what several share: acme/app reaches two policies, the
	// role is reached by two, the token audience from both platforms.
	for _, e := range [][2]string{
		{gh, app}, {gh, owner}, {gl, project},
		{app, deploy}, {app, deployToo}, {deploy, role}, {deployToo, role},
		{owner, artifacts}, {project, gitlab}, {artifacts, store}, {gitlab, store},
	} {
		if !d.hasEdge(e[0], e[1]) {
			t.Errorf("no edge %q --> %q", d.labels[e[0]], d.labels[e[1]])
		}
	}
	// A pattern is the widest reach: marked, and only it.
	if !d.has("wide", owner) || d.has("wide", app) || d.has("wide", project) {
		t.Errorf("wide nodes = %v, want only %q", d.classes["wide"], d.labels[owner])
	}
	if !strings.Contains(d.labels[owner], "⚠ widest") {
		t.Errorf("the pattern's label %q does not say it is the widest", d.labels[owner])
	}
	if d.shapes[gh] != `(["` || d.shapes[app] != `["` || d.shapes[deploy] != `{{"` || d.shapes[role] != `("` {
		t.Errorf("shapes = %v", d.shapes)
	}
	// The identities' pins only, not the policy's other conditions.
	if strings.Contains(d.labels[app], "ref") {
		t.Errorf("identity label %q holds a ref condition", d.labels[app])
	}
}

func TestBlastMermaidEscapesHostilePolicyValues(t *testing.T) {
	hostile := []string{
		`acme/x"]; evil["pwn`,
		"acme/<img src=x onerror=alert(1)>",
		"acme/line\nbreak & co",
		"acme/a-->b %% c `d` #quot; e \\ f",
	}
	files := map[string]string{}
	for i, v := range hostile {
		files["p"+strconv.Itoa(i)+".yaml"] = "issuer: github\nmatch:\n  repository: " + strconv.Quote(v) +
			"\n  repository_id: \"" + strconv.Itoa(i+1) + "\"\ngrant: {token: {audience: " +
			strconv.Quote("https://svc.example/"+strconv.Itoa(i)+`"]-->x%%<b>`) + ", duration: 5m}}\n"
	}
	files["regex.yaml"] = "issuer: github\nmatch:\n  repository: acme/r\n  repository_owner: {regex: 'acme|evil\"\\]-->x%%`{}#35;'}\ngrant: {token: {audience: https://y.example, duration: 5m}}\n"
	set := mustLoad(t, files)
	out := BlastMermaid(set)
	d := parseMermaid(t, out)
	// Exactly what the policies make: 1 issuer, 5 identities, 5 policies,
	// 5 credentials, and no node or edge a value smuggled in.
	if len(d.labels) != 16 {
		t.Errorf("%d nodes, want 16: %v", len(d.labels), d.labels)
	}
	edges := 0
	for _, tos := range d.edges {
		edges += len(tos)
	}
	if edges != 15 {
		t.Errorf("%d edges, want 15", edges)
	}
	for i, v := range hostile {
		// The label shows the value as the policy's own text does.
		d.find(t, "repository = "+quotePattern(v))
		d.find(t, "https://svc.example/"+strconv.Itoa(i)+`"]-->x%%<b>`)
	}
	if id := d.find(t, "repository_owner matches regex"); !d.has("wide", id) {
		t.Error("the regex pin is not marked wide")
	}
	for _, bad := range []string{"<img", "<b>", "evil[\"", "\n  x"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q raw:\n%s", bad, out)
		}
	}
}

func TestMermaidLabelEscapes(t *testing.T) {
	tests := map[string]string{
		"plain text":    "plain text",
		`a"b`:           "a#34;b",
		"#35;":          "#35;35;",
		"<br/>":         "#60;br/#62;",
		"a&b`c%d\\e":    "a#38;b#96;c#37;d#92;e",
		"tab\there\x00": "tab here ",
		"line\nbreak":   "line<br/>break",
		"\u2028sep":     " sep",
		"⚠ widest: ünï": "⚠ widest: ünï",
	}
	for in, want := range tests {
		if got := mermaidLabel(in); got != want {
			t.Errorf("mermaidLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
