package yamlpos

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestSyntaxErrorsNameTheLineTheyAreOn(t *testing.T) {
	tests := []struct {
		name, src string
		want      string
	}{
		// The scanner's errors: yaml.v3 counts their lines from 1.
		{"a tab in indentation", "a: 1\nb:\n\tc: 2\n", "f.yaml:3:1: YAML: found character that cannot start any token"},
		{"a stray mapping value", "a: 1\n  b: 2\n", "f.yaml:2:1: YAML: mapping values are not allowed in this context"},
		// The parser's errors: yaml.v3 counts their lines from 0.
		{"an unclosed flow sequence", "a: 1\nb: [x\nc: 2\n", "f.yaml:2:1: YAML: did not find expected ',' or ']'"},
		{"an unclosed flow mapping", "a: 1\nb: {x: 1\nc: 2\n", "f.yaml:2:1: YAML: did not find expected ',' or '}'"},
		{"a block sequence broken by a key", "a:\n  - x\n  b: 1\n", "f.yaml:2:1: YAML: did not find expected '-' indicator"},
		// Noticed at the end of the input: the last line, not the one after.
		{"a flow sequence left open at the end", "a: 1\nb: [\n", "f.yaml:2:1: YAML: did not find expected node content"},
		{"the same without a final newline", "a: 1\nb: [", "f.yaml:2:1: YAML: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := Documents("f.yaml", []byte(tt.src), 1)
			if p == nil {
				t.Fatalf("no problem for %q", tt.src)
			}
			if got := p.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// A second document is found (at its --- line) and counted, not read on.
func TestDocumentsCountsOneMoreThanMax(t *testing.T) {
	docs, p := Documents("f.yaml", []byte("a: 1\n---\nb: 2\n---\nc: 3\n"), 1)
	if p != nil || len(docs) != 2 || Root(docs[0]).Content[0].Value != "a" || docs[1].Line != 2 {
		t.Fatalf("docs = %v, problem %v", docs, p)
	}
	if docs, p := Documents("f.yaml", []byte("# only a comment\n"), 1); p != nil || len(docs) > 1 || (len(docs) == 1 && Root(docs[0]) != nil) {
		t.Errorf("a comment-only file: %v, %v", docs, p)
	}
}

func TestProblemRendersWhatIsKnown(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Col: 5, Message: "m"}, "a.yaml:3:5: m"},
		{Problem{File: "a.yaml", Line: 3, Message: "m"}, "a.yaml:3: m"},
		{Problem{File: "dir", Message: "unreadable"}, "dir: unreadable"},
		{Problem{File: "ferry.yaml", Line: 1, Col: 9, Path: "listen", Message: "bad"}, "ferry.yaml:1:9: listen: bad"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v renders %q, want %q", tt.p, got, tt.want)
		}
	}
	ps := []Problem{{File: "b", Line: 1}, {File: "a", Line: 9, Col: 2}, {File: "a", Line: 9, Col: 1}, {File: "a"}}
	Sort(ps)
	if got := Join(ps); got != "a: \na:9:1: \na:9:2: \nb:1: " {
		t.Errorf("sorted:\n%s", got)
	}
}

func TestReaderRecordsEveryProblemAtItsNode(t *testing.T) {
	var doc yaml.Node
	src := "a: 1\na: 2\nlist: [x, 3]\nd: soon\nlong: 3h\nz: {q: 1}\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	r := &Reader{File: "f.yaml"}
	f, ok := r.Fields(Root(&doc), "top", "a", "list", "d", "long")
	if ok || f == nil {
		t.Fatalf("Fields = %v, %v", f, ok)
	}
	if _, ok := r.StrList(f.Value("list"), "list"); ok {
		t.Error("a list holding a number read as strings")
	}
	if d := r.Duration(f.Value("d"), "d", time.Minute, time.Hour, 5*time.Minute); d != 5*time.Minute {
		t.Errorf("a bad duration gave %s, want the default", d)
	}
	if d := r.Duration(f.Value("long"), "long", time.Minute, time.Hour, 5*time.Minute); d != 5*time.Minute {
		t.Errorf("an out-of-range duration gave %s, want the default", d)
	}
	if d := r.Duration(nil, "absent", time.Minute, time.Hour, 5*time.Minute); d != 5*time.Minute {
		t.Errorf("an absent duration gave %s", d)
	}
	want := []string{
		`f.yaml:2:1: top: key "a" appears twice (first at line 1)`,
		`f.yaml:6:1: unknown key "z" in top (allowed: a, list, d, long)`,
		`f.yaml:3:11: list entries must be a string`,
		`f.yaml:4:4: d "soon" is not a duration such as 15m or 1h`,
		`f.yaml:5:7: long 3h is out of range: allowed 1m..1h`,
	}
	var got []string
	for _, p := range r.Problems() {
		got = append(got, p.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{15 * time.Minute: "15m", time.Hour: "1h", 90 * time.Minute: "1h30m", 30 * time.Second: "30s"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestBoundedReportsEveryCollectionOverTheLimitWhereItIs(t *testing.T) {
	src := "a: [1, 2, 3]\nb:\n  c: [1, 2]\n  d:\n    - x\n    - {e: 1, f: 2, g: 3, h: 4}\n"
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		max  int
		want []string
	}{
		{4, nil},
		{3, []string{"f.yaml:6:7: b.d[1]: a mapping of 4 keys is over the limit of 3"}},
		{2, []string{
			"f.yaml:1:4: a: a list of 3 items is over the limit of 2",
			"f.yaml:6:7: b.d[1]: a mapping of 4 keys is over the limit of 2",
		}},
		{1, []string{
			"f.yaml:1:1: a mapping of 2 keys is over the limit of 1",
			"f.yaml:1:4: a: a list of 3 items is over the limit of 1",
			"f.yaml:3:3: b: a mapping of 2 keys is over the limit of 1",
			"f.yaml:3:6: b.c: a list of 2 items is over the limit of 1",
			"f.yaml:5:5: b.d: a list of 2 items is over the limit of 1",
			"f.yaml:6:7: b.d[1]: a mapping of 4 keys is over the limit of 1",
		}},
	} {
		r := &Reader{File: "f.yaml"}
		ok := r.Bounded(&doc, tt.max)
		var got []string
		for _, p := range r.Problems() {
			got = append(got, p.String())
		}
		if ok != (len(tt.want) == 0) || strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("max %d: ok %v, problems:\n%s\nwant:\n%s", tt.max, ok, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}
