package exchange_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/exchange"
)

// A gateway or WAF in front of the broker that reads the first of two
// keys, or only exact key names, must never see another request than the
// one the broker acts on: such bodies are refused, and mint nothing.
func TestBodiesParsersReadDifferentlyAreRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tests := []struct {
		name string
		body func(tok string) string
		desc string
	}{
		{"the policy twice", func(tok string) string {
			return `{"policy":"deploy-prod","policy":"artifacts","token":"` + tok + `"}`
		}, `field "policy" appears twice`},
		{"the token twice", func(tok string) string {
			return `{"policy":"artifacts","token":"x","token":"` + tok + `"}`
		}, `field "token" appears twice`},
		{"the policy twice, once escaped", func(tok string) string {
			return `{"policy":"artifacts","\u0070olicy":"scoped","token":"` + tok + `"}`
		}, "appears twice"},
		{"Policy", func(tok string) string { return `{"Policy":"artifacts","token":"` + tok + `"}` }, `"Policy" is not "policy"`},
		{"a Kelvin sign in token", func(tok string) string {
			return "{\"policy\":\"artifacts\",\"to\u212aen\":\"" + tok + "\"}"
		}, `is not "token"`},
		{"invalid UTF-8", func(tok string) string { return "{\"policy\":\"artifacts\xff\",\"token\":\"" + tok + "\"}" }, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := h.sign(h.gh, "github-push-main", nil)
			r := h.post("/v1/exchange", "application/json", strings.NewReader(tt.body(tok)), nil)
			wantError(t, r, 400, "invalid_request")
			if !strings.Contains(r.str("error_description"), tt.desc) {
				t.Errorf("error_description %q does not say %q", r.str("error_description"), tt.desc)
			}
			if strings.Contains(r.raw, tok) {
				t.Error("the refusal echoes the token")
			}
			// The token is not spent: the job can send a body that reads
			// one way.
			if r := h.exchange("artifacts", tok, nil); r.status != 200 {
				t.Errorf("the same token in a plain body: %d %s", r.status, r.raw)
			}
		})
	}
	for _, rec := range h.auditRecords() {
		if rec.Decision == audit.Deny && rec.Error != "invalid_request" {
			t.Errorf("audit record %+v", rec)
		}
	}
}

func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	for _, tt := range []struct {
		name, path, contentType, body string
		code                          string
	}{
		{"/v1/exchange", "/v1/exchange", "application/json", `{"policy":"artifacts"}`, "invalid_request"},
		{"/v1/exchange with the token in the body too", "/v1/exchange", "application/json", `{"policy":"artifacts","token":"` + tok + `"}`, "invalid_request"},
		{"/v1/token", "/v1/token", "application/x-www-form-urlencoded",
			"grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:id_token&audience=artifacts&subject_token=" + tok,
			"invalid_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, h.srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.contentType)
			// The same token twice: even agreeing headers are two.
			req.Header.Add("Authorization", "Bearer "+tok)
			req.Header.Add("Authorization", "Bearer "+tok)
			r := h.do(req)
			if r.status != 400 || r.str("error") != tt.code {
				t.Fatalf("got %d %s, want 400 %s", r.status, r.raw, tt.code)
			}
			if !strings.Contains(r.str("error_description"), "2 Authorization headers") {
				t.Errorf("error_description %q", r.str("error_description"))
			}
		})
	}
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Errorf("the token was spent by a refused request: %d %s", r.status, r.raw)
	}
}

// /v1/token answers what it does not honour with the RFCs' errors, never
// with a token other than the one asked for; nothing refused spends the
// subject token.
func TestTokenEndpointRefusesWhatItDoesNotHonour(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const formType = "application/x-www-form-urlencoded"
	base := func(tok string) url.Values {
		return url.Values{
			"grant_type":         {exchange.GrantTypeTokenExchange},
			"subject_token":      {tok},
			"subject_token_type": {exchange.TokenTypeIDToken},
			"audience":           {"artifacts"},
		}
	}
	tests := []struct {
		name        string
		edit        func(f url.Values)
		contentType string
		auth        string
		status      int
		code        string
		desc        string
	}{
		{name: "resource", edit: func(f url.Values) { f.Set("resource", "https://api.example/") }, status: 400, code: "invalid_target", desc: `"resource"`},
		{name: "two resources", edit: func(f url.Values) { f["resource"] = []string{"https://a.example/", "https://b.example/"} }, status: 400, code: "invalid_target", desc: `"resource" is repeated`},
		{name: "two audiences", edit: func(f url.Values) { f.Add("audience", "scoped") }, status: 400, code: "invalid_target", desc: `"audience" is repeated`},
		{name: "scope", edit: func(f url.Values) { f.Set("scope", "read write") }, status: 400, code: "invalid_scope", desc: `"scope"`},
		{name: "an actor token", edit: func(f url.Values) {
			f.Set("actor_token", "eyJ.actor.x")
			f.Set("actor_token_type", exchange.TokenTypeJWT)
		}, status: 400, code: "invalid_request", desc: "delegation"},
		{name: "an actor token type alone", edit: func(f url.Values) { f.Set("actor_token_type", exchange.TokenTypeJWT) }, status: 400, code: "invalid_request", desc: `without "actor_token"`},
		{name: "a SAML token asked for", edit: func(f url.Values) { f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:saml2") }, status: 400, code: "invalid_request", desc: "requested_token_type"},
		{name: "a refresh token asked for", edit: func(f url.Values) { f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }, status: 400, code: "invalid_request", desc: "requested_token_type"},
		{name: "another bearer token in Authorization", auth: "Bearer eyJ.other.token", status: 400, code: "invalid_request", desc: "different tokens"},
		{name: "client authentication", auth: "Basic Y2xpZW50OnNlY3JldA==", status: 400, code: "invalid_request", desc: "no client authentication"},
		{name: "a Latin-1 form", contentType: formType + "; charset=ISO-8859-1", status: 400, code: "invalid_request", desc: "UTF-8"},
		{name: "a form that is not UTF-8", edit: func(f url.Values) { f.Set("audience", "artifacts\xff") }, status: 400, code: "invalid_request", desc: "UTF-8"},

		// Accepted: what the RFCs allow and the broker honours.
		{name: "an empty scope is left out (RFC 6749 §3.1)", edit: func(f url.Values) { f.Set("scope", "") }, status: 200},
		{name: "a UTF-8 charset", contentType: formType + "; charset=UTF-8", status: 200},
		{name: "the subject token as Bearer too", auth: "Bearer <tok>", status: 200},
		{name: "a jwt asked for", edit: func(f url.Values) { f.Set("requested_token_type", exchange.TokenTypeJWT) }, status: 200},
		{name: "an unknown parameter is ignored (RFC 6749 §3.1)", edit: func(f url.Values) { f.Set("client_id", "ci") }, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := h.sign(h.gh, "github-push-main", nil)
			f := base(tok)
			if tt.edit != nil {
				tt.edit(f)
			}
			ct := tt.contentType
			if ct == "" {
				ct = formType
			}
			header := map[string]string{}
			if tt.auth != "" {
				header["Authorization"] = strings.ReplaceAll(tt.auth, "<tok>", tok)
			}
			r := h.post("/v1/token", ct, strings.NewReader(f.Encode()), header)
			if tt.status == 200 {
				if r.status != 200 || r.str("access_token") == "" {
					t.Fatalf("got %d %s, want a token", r.status, r.raw)
				}
				return
			}
			if r.status != tt.status || r.str("error") != tt.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.raw, tt.status, tt.code)
			}
			if d := r.str("error_description"); !strings.Contains(d, tt.desc) {
				t.Errorf("error_description %q does not say %q", d, tt.desc)
			}
			if strings.Contains(r.raw, tok) || r.str("access_token") != "" {
				t.Errorf("the refusal carries a token: %s", r.raw)
			}
			if r := h.tokenExchange(base(tok)); r.status != 200 {
				t.Errorf("the refused request spent the token: %d %s", r.status, r.raw)
			}
		})
	}
}
