package gcpiam

import "testing"

func TestTemplateInStringLiteral(t *testing.T) {
	tests := []struct {
		expr string
		want bool
	}{
		{`resource.name.startsWith("a/{{repository}}/")`, true},
		{`resource.name.startsWith('a/{{repository}}/')`, true},
		{`resource.name == "x" || resource.name.startsWith("{{repository}}")`, true},
		{`resource.name.startsWith("a\"b{{repository}}")`, true},
		{`resource.name == {{repository}}`, false},
		{`resource.name.startsWith("a") && {{repository}}`, false},
		{`"a\"" + {{repository}}`, false},
	}
	for _, tt := range tests {
		if got := templateInStringLiteral(tt.expr); got != tt.want {
			t.Errorf("templateInStringLiteral(%s) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}
