package claimtmpl

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		in      string
		want    string // normal form; "" for no template
		claims  []string
		wantErr string
	}{
		{in: "no template here", want: ""},
		{in: "single { braces }", want: ""},
		{in: "{{repository}}", want: "{{repository}}", claims: []string{"repository"}},
		{in: "a/{{ repository }}/b/{{\tref\t}}", want: "a/{{repository}}/b/{{ref}}", claims: []string{"repository", "ref"}},
		{in: "x}}y{{run_id}}", want: "x}}y{{run_id}}", claims: []string{"run_id"}},
		{in: "{{}}", wantErr: `template "{{}}" must name one claim`},
		{in: "{{a b}}", wantErr: `template "{{a b}}" must name one claim`},
		{in: "{{a.b}}", wantErr: `template "{{a.b}}" must name one claim`},
		{in: "{{{a}}}", wantErr: `template "{{{a}}" must name one claim`},
		{in: "x{{a", wantErr: `template "{{a" is not closed with }}`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if got != nil {
					t.Errorf("got a template %q for plain text", got)
				}
				return
			}
			if got.String() != tt.want || !reflect.DeepEqual(got.Claims(), tt.claims) {
				t.Errorf("got %q %v, want %q %v", got, got.Claims(), tt.want, tt.claims)
			}
		})
	}
}
