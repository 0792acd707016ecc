package claims

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseReadsWhatCIPlatformsSend(t *testing.T) {
	s, err := Parse([]byte(`{"iss":"https://x","sub":"repo:acme/app","jti":"j","aud":["ferry","other"],"exp":1700000300,"nbf":1699999700.5,
		"iat":1700000000,"repository_id":"892345671","project_id":4242,"ref_protected":true,"groups":["a"],"extra":{"k":1},"gone":null,
		"name":"caf\u00e9 \"q\""}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Issuer != "https://x" || s.Subject != "repo:acme/app" || s.ID != "j" || len(s.Audience) != 2 || s.Expiry.Unix() != 1700000300 ||
		s.NotBefore.UnixMilli() != 1699999700500 || s.IssuedAt.Unix() != 1700000000 {
		t.Errorf("registered claims = %+v", s)
	}
	for name, want := range map[string]Value{
		"repository_id": {"892345671", String}, "project_id": {"4242", Number}, "ref_protected": {"true", Bool}, "name": {`café "q"`, String},
	} {
		if got, ok := s.Get(name); !ok || got != want {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	if _, ok := s.Get("groups"); ok || s.Kind("groups") != List || s.Kind("extra") != Object || s.Kind("gone") != 0 {
		t.Errorf("non-scalars: groups %v extra %v gone %v", s.Kind("groups"), s.Kind("extra"), s.Kind("gone"))
	}
}

func TestParseRefusesAPayloadTwoReadersCouldReadTwoWays(t *testing.T) {
	for name, payload := range map[string]string{
		"a name given twice":         `{"iss":"a","iss":"b"}`,
		"a name given twice, nested": `{"x":{"k":1,"k":2}}`,
		"invalid UTF-8":              "{\"iss\":\"a\xff\"}",
		"data after the object":      `{"iss":"a"} {}`,
		"a list":                     `[1]`,
		"null":                       `null`,
		"truncated":                  `{"iss":"a"`,
		"a lone surrogate escape":    `{"iss":"\ud800"}`,
		"a control character raw":    "{\"iss\":\"a\x01\"}",
		"a trailing comma":           `{"iss":"a",}`,
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(payload))
			var se *SyntaxError
			if !errors.As(err, &se) || s != nil {
				t.Errorf("Parse(%q) = %v, %v; want a *SyntaxError", payload, s, err)
			}
		})
	}
}

func TestParseReturnsTheRestWithATypeError(t *testing.T) {
	s, err := Parse([]byte(`{"iss":"https://x","sub":5,"aud":"ferry"}`))
	var te *TypeError
	if !errors.As(err, &te) || te.Claim != "sub" || s == nil || s.Issuer != "https://x" {
		t.Fatalf("Parse = %+v, %v", s, err)
	}
	for payload, claim := range map[string]string{
		`{"exp":"1700000000"}`: "exp", `{"exp":null}`: "exp", `{"aud":[1]}`: "aud", `{"aud":{}}`: "aud", `{"jti":true}`: "jti",
		`{"iat":-1}`: "iat",
	} {
		if _, err := Parse([]byte(payload)); !errors.As(err, &te) || te.Claim != claim {
			t.Errorf("Parse(%s) = %v, want a type error on %s", payload, err, claim)
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts, encoding/json
// reads the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"iss":"a","aud":["b"],"exp":1,"x":[1,{"y":null}]}`, `{"a":1,"a":2}`, `{"n":1e400}`, `{"s":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		var ref map[string]any
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(&ref); err != nil || ref == nil {
			t.Fatalf("Parse accepted %q, encoding/json refuses it: %v", data, err)
		}
		for name, v := range ref {
			got, ok := s.Get(name)
			switch x := v.(type) {
			case string:
				if name != "aud" && (!ok || got.Text != x) {
					t.Fatalf("%s: Parse read %q, encoding/json %q", name, got.Text, x)
				}
			case json.Number:
				if name != "exp" && name != "nbf" && name != "iat" && (!ok || got.Text != x.String()) {
					t.Fatalf("%s: Parse read %q, encoding/json %q", name, got.Text, x)
				}
			}
		}
	})
}
