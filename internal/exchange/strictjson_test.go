package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type strictBody struct {
	Policy   string          `json:"policy"`
	Token    string          `json:"token"`
	Duration json.RawMessage `json:"duration"`
}

var strictKeys = []string{"policy", "token", "duration"}

func TestDecodeStrictRefusesWhatParsersReadDifferently(t *testing.T) {
	tests := []struct {
		name, body string
		// desc is part of the refusal's description; "" means accepted.
		desc string
	}{
		{"a plain body", `{"policy":"p","token":"t","duration":"15m"}`, ""},
		{"white space around it", " \n{\"policy\" : \"p\"}\r\n\t", ""},
		{"a nested value under an allowed key", `{"duration":{"a":[1,{"b":2}],"c":null}}`, ""},
		{"escapes in values", `{"policy":"\u0070"}`, ""},
		{"the same key in different case in different objects", `{"duration":[{"a":1},{"A":2}]}`, ""},

		{"a duplicate key", `{"policy":"deploy-prod","policy":"other"}`, `field "policy" appears twice`},
		{"a duplicate spelt with an escape", `{"policy":"a","\u0070olicy":"b"}`, `field "policy" appears twice`},
		{"a duplicate in a nested object", `{"duration":{"x":1,"x":2}}`, `field "x" appears twice`},
		{"a duplicate deep in an array", `{"duration":[[{"x":1,"y":{"z":1,"z":2}}]]}`, `field "z" appears twice`},
		{"a duplicate among many keys", `{"duration":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"a":11}}`, `field "a" appears twice`},
		{"a duplicate past the first keys", `{"duration":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"j":11}}`, `field "j" appears twice`},
		{"case variants among many keys", `{"duration":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"I":10}}`, `fields "i" and "I" differ only in case`},
		{"many distinct keys", `{"duration":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11}}`, ""},
		{"a key in another case", `{"Policy":"p"}`, `field "Policy" is not "policy": field names are case-sensitive`},
		{"a key in upper case", `{"TOKEN":"t"}`, `field "TOKEN" is not "token"`},
		{"a key with the Kelvin sign for k", "{\"to\u212aen\":\"t\"}", `is not "token"`},
		{"a key with the Kelvin sign escaped", `{"to\u212Aen":"t"}`, `is not "token"`},
		{"a key and its case variant", `{"policy":"a","POLICY":"b"}`, `fields "policy" and "POLICY" differ only in case`},
		{"nested keys folding together by the long s", "{\"duration\":{\"s\":1,\"\u017f\":2}}", `differ only in case`},
		{"an unknown key", `{"polcy":"p"}`, `unknown field "polcy" (allowed: policy, token, duration)`},
		{"a long unknown key is not quoted", `{"` + strings.Repeat("k", 200) + `":1}`, `unknown field (200 bytes, not quoted)`},
		{"invalid UTF-8 in a value", "{\"policy\":\"p\xff\"}", "not valid UTF-8"},
		{"invalid UTF-8 in a key", "{\"polic\xc3\":\"p\"}", "not valid UTF-8"},
		{"an array", `[]`, "must be a JSON object"},
		{"a string", `"policy"`, "must be a JSON object"},
		{"null", `null`, "must be a JSON object"},
		{"empty", ``, "empty body"},
		{"only white space", "  \n", "empty body"},
		{"truncated", `{"policy":`, "truncated JSON"},
		{"truncated in an array", `{"duration":[1,`, "truncated JSON"},
		{"a second object", `{"policy":"p"}{"policy":"q"}`, "data after the JSON object"},
		{"trailing text", `{"policy":"p"} x`, "data after the JSON object"},
		{"a stray closing bracket", `{"policy":"p"}]`, "data after the JSON object"},
		{"a missing colon", `{"policy" "p"}`, "syntax error"},
		{"a trailing comma", `{"policy":"p",}`, "syntax error"},
		{"a number key", `{1:2}`, "syntax error"},
		{"deep nesting", `{"duration":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "nested deeper than 32 levels"},
		{"a wrong type", `{"policy":1}`, `field "policy" must be a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strictBody
			err := decodeStrict([]byte(tt.body), &b, strictKeys...)
			if tt.desc == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var bad *badRequest
			if !errors.As(err, &bad) {
				t.Fatalf("got %v (%T), want a badRequest saying %q", err, err, tt.desc)
			}
			if !strings.Contains(bad.reason, tt.desc) {
				t.Errorf("reason %q does not say %q", bad.reason, tt.desc)
			}
		})
	}
}

// What the strict decoder accepts, encoding/json decodes to the same
// values, and every key it decodes was spelt as the contract spells it.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"policy":"p","token":"t","duration":"15m"}`,
		`{"policy":"p","policy":"q"}`,
		`{"Policy":"p"}`,
		"{\"to\u212aen\":\"t\"}",
		`{"duration":{"a":[1,{"b":2}],"A":null}}`,
		`{"policy":"p"} {}`,
		`{"duration":1e400}`,
		"{\"policy\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got strictBody
		err := decodeStrict(body, &got, strictKeys...)
		if err != nil {
			var bad *badRequest
			if !errors.As(err, &bad) || classify(err).Code != InvalidRequest {
				t.Fatalf("refusal is not a described invalid_request: %#v", err)
			}
			return
		}
		var loose map[string]json.RawMessage
		if err := json.Unmarshal(body, &loose); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		for k := range loose {
			if k != "policy" && k != "token" && k != "duration" {
				t.Fatalf("accepted key %q", k)
			}
		}
		var want strictBody
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("accepted a body encoding/json cannot decode: %v", err)
		}
		if got.Policy != want.Policy || got.Token != want.Token || string(got.Duration) != string(want.Duration) {
			t.Fatalf("decoded %+v, encoding/json %+v", got, want)
		}
	})
}

// BenchmarkDecodeExchange is the strict decode of a GitHub-sized exchange
// body, the first thing every request pays for.
func BenchmarkDecodeExchange(b *testing.B) {
	body := fmt.Appendf(nil, `{"policy":"deploy-prod","token":%q,"duration":"15m"}`, "eyJ"+strings.Repeat("x", 1200)+".e30.sig")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeExchange(body, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReadAllReadsTheDeclaredLength(t *testing.T) {
	body := `{"policy":"p","token":"t"}`
	tests := []struct {
		name     string
		sent     string
		declared int64
		wantErr  bool
	}{
		{"the declared length", body, int64(len(body)), false},
		{"no length declared (chunked)", body, -1, false},
		{"a length past the limit is read to its end, for the limit to refuse", body, MaxBodyBytes + 1, false},
		{"a body cut short of its length", body[:10], int64(len(body)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(strings.NewReader(tt.sent), tt.declared)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("readAll = %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.sent {
				t.Fatalf("readAll = %q, %v; want %q", got, err, tt.sent)
			}
		})
	}
}
