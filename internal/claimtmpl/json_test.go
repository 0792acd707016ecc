package claimtmpl

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/claims"
)

func TestParseJSONRefusesWhatCouldConfuseAPolicy(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"a key given twice", `{"Statement":1,"Statement":2}`, `key "Statement" appears twice`},
		{"a template in a key", `{"{{repository}}":1}`, "not in keys"},
		{"an unclosed template", `{"a":"{{repository"}`, "not closed"},
		{"text after the value", `{"a":1} x`, "unexpected text"},
		{"nesting past the bound", strings.Repeat("[", 70) + strings.Repeat("]", 70), "nested too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseJSON(tt.src); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestJSONRendersClaimsIntoStringValuesOnly(t *testing.T) {
	doc, err := ParseJSON(`{"Statement":[{"Resource":"arn:aws:s3:::b/{{repository}}/*","Max":10,"On":true,"N":null}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsObject() || !doc.HasKey("Statement") || doc.HasKey("Resource") || !doc.HasTemplate() {
		t.Fatalf("shape of %s", doc)
	}
	if doc.String() != `{"Statement":[{"Resource":"arn:aws:s3:::b/{{repository}}/*","Max":10,"On":true,"N":null}]}` {
		t.Errorf("as written: %s", doc)
	}
	c, err := claims.FromMap(map[string]any{"repository": "acme/app"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := doc.Render("aws.session_policy", c)
	if err != nil {
		t.Fatal(err)
	}
	if out != `{"Statement":[{"Resource":"arn:aws:s3:::b/acme/app/*","Max":10,"On":true,"N":null}]}` {
		t.Errorf("rendered: %s", out)
	}
}

// FuzzParseJSON: any text either fails to parse or round-trips to valid
// JSON with the same members, whatever claims fill it.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"a":"{{x}}"}`, `[1,2,{"b":null}]`, `"{{"`, `{"a":1,"a":2}`, `{"Statement":[{"Resource":"{{repository}}*"}]}`} {
		f.Add(s, "acme/app")
	}
	f.Fuzz(func(t *testing.T, src, value string) {
		doc, err := ParseJSON(src)
		if err != nil {
			return
		}
		if !json.Valid([]byte(doc.String())) {
			t.Fatalf("%q parsed but writes invalid JSON %q", src, doc.String())
		}
		c, err := claims.FromMap(map[string]any{"x": value, "repository": value})
		if err != nil {
			return
		}
		out, err := doc.Render("f", c)
		if err != nil {
			return // a value unsafe for the field is refused, not spliced
		}
		if !json.Valid([]byte(out)) {
			t.Fatalf("rendering %q with %q wrote invalid JSON %q", src, value, out)
		}
	})
}
