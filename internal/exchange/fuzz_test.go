package exchange

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// secretToken marks the token in the seeds: no refusal may carry it.
const secretToken = "SECRETTOKEN-0123456789-abcdefghijklmnop"

// headers turns the fuzzer's two strings into Authorization values: none,
// one, or two when the second is set.
func headers(auth, auth2 string) []string {
	var out []string
	for _, v := range []string{auth, auth2} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func FuzzDecodeExchange(f *testing.F) {
	f.Add([]byte(`{"policy":"deploy-prod","token":"eyJ.a.b","duration":"15m"}`), "", "")
	f.Add([]byte(`{"policy":"p","duration":900}`), "Bearer eyJ.a.b", "")
	f.Add([]byte(`{"policy":"p","token":"SECRETTOKEN-0123456789-abcdefghijklmnop","duration":"forever"}`), "", "")
	f.Add([]byte(`{"policy":"p","token":"SECRETTOKEN-0123456789-abcdefghijklmnop"} trailing`), "", "")
	f.Add([]byte(`{"policy":1}`), "Basic abc", "")
	f.Add([]byte(`[]`), "", "")
	f.Add([]byte(`{"policy":"p","token":"a","token":"b"}`), "", "")
	f.Add([]byte(`{"Policy":"p","token":"SECRETTOKEN-0123456789-abcdefghijklmnop"}`), "", "")
	f.Add([]byte(`{"policy":"p"}`), "Bearer SECRETTOKEN-0123456789-abcdefghijklmnop", "Bearer SECRETTOKEN-0123456789-abcdefghijklmnop")
	f.Add([]byte(`{"policy":"p","token":"a","duration":1e308}`), "", "")
	f.Fuzz(func(t *testing.T, body []byte, auth, auth2 string) {
		req, err := decodeExchange(body, headers(auth, auth2))
		if err != nil {
			var bad *badRequest
			e := classify(err)
			if !errors.As(err, &bad) || e.Code != InvalidRequest || e.Description == "" {
				t.Fatalf("decode error is not a described invalid_request: %#v", err)
			}
			// A short key the caller wrote may be quoted back; a value or
			// an Authorization header never.
			for _, v := range echoable(body, auth, auth2) {
				if strings.Contains(e.Description, v) {
					t.Fatalf("error description %q echoes %q", e.Description, v)
				}
			}
			return
		}
		if req.Policy == "" || req.Token == "" {
			t.Fatalf("accepted a request without policy or token: %+v", req)
		}
		if req.Duration < 0 {
			t.Fatalf("accepted a negative duration %s", req.Duration)
		}
		if auth != "" && auth2 != "" {
			t.Fatalf("accepted two Authorization headers")
		}
	})
}

// echoable is what a refusal must not quote: the body's top-level string
// values and the Authorization headers' tokens longer than anything a
// refusal may quote back (maxEchoed), which every token is.
func echoable(body []byte, headers ...string) []string {
	var out []string
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	for _, v := range m {
		if s, ok := v.(string); ok && len(s) > maxEchoed {
			out = append(out, s)
		}
	}
	for _, h := range headers {
		if _, tok, _ := strings.Cut(h, " "); len(strings.TrimSpace(tok)) > maxEchoed {
			out = append(out, strings.TrimSpace(tok))
		}
	}
	return out
}

// oauthCodes are the codes a /v1/token request of the caller's own making
// may be refused with.
var oauthCodes = map[string]bool{
	"invalid_request": true, "unsupported_grant_type": true, "invalid_target": true, "invalid_scope": true,
}

func FuzzDecodeTokenExchange(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	good := "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange" +
		"&subject_token=SECRETTOKEN-0123456789-abcdefghijklmnop&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&audience=artifacts"
	f.Add(form, []byte(good), "", "")
	f.Add(form+"; charset=utf-8", []byte(good+"&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"), "Bearer SECRETTOKEN-0123456789-abcdefghijklmnop", "")
	f.Add(form+"; charset=latin1", []byte(good), "", "")
	f.Add(form, []byte(good+"&resource=https%3A%2F%2Fx&scope=a"), "", "")
	f.Add(form, []byte(good+"&actor_token=SECRETTOKEN-0123456789-abcdefghijklmnop&actor_token_type=x"), "", "")
	f.Add(form, []byte(good+"&audience=other"), "", "")
	f.Add(form, []byte(good+"&SECRETTOKEN-0123456789-abcdefghijklmnop=1&SECRETTOKEN-0123456789-abcdefghijklmnop=2"), "", "")
	f.Add(form, []byte(good+"&requested_token_type=SECRETTOKEN-0123456789-abcdefghijklmnop"), "", "")
	f.Add(form, []byte(good+";x=1"), "", "")
	f.Add(form, []byte(good+"&audience=%ff"), "Bearer other", "")
	f.Add(form, []byte(good), "Basic SECRETTOKEN-0123456789-abcdefghijklmnop", "Bearer SECRETTOKEN-0123456789-abcdefghijklmnop")
	f.Add("application/json", []byte(`{}`), "", "")
	f.Add("", []byte("grant_type=client_credentials"), "", "")
	f.Fuzz(func(t *testing.T, contentType string, body []byte, auth, auth2 string) {
		req, err := decodeTokenExchange(contentType, headers(auth, auth2), body)
		if err != nil {
			e := classify(err)
			if e.Code != InvalidRequest || e.Description == "" || !oauthCodes[oauthCode(e)] {
				t.Fatalf("refusal %#v classifies as %s / %s, want a described invalid_request with an RFC 6749 code", err, e.Code, oauthCode(e))
			}
			if strings.Contains(e.Description, secretToken) {
				t.Fatalf("error description echoes the token: %s", e.Description)
			}
			if v, _ := url.ParseQuery(string(body)); len(v.Get("subject_token")) >= 8 && strings.Contains(e.Description, v.Get("subject_token")) {
				t.Fatalf("error description echoes the subject token: %s", e.Description)
			}
			return
		}
		if req.Policy == "" || req.Token == "" || !req.BearerOnly {
			t.Fatalf("accepted %+v", req)
		}
		if auth != "" && auth2 != "" {
			t.Fatalf("accepted two Authorization headers")
		}
		for _, p := range []string{"resource", "scope", "actor_token", "actor_token_type"} {
			if v, _ := url.ParseQuery(string(body)); v.Get(p) != "" {
				t.Fatalf("accepted a request with %s, which the broker does not honour", p)
			}
		}
	})
}
