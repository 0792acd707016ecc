package tokensign_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// Whatever claim Sign accepts arrives in the verified token exactly as given,
// and never displaces a registered claim.
func FuzzSignCopiesClaimsExactly(f *testing.F) {
	for _, seed := range [][2]string{
		{"repository", "acme/app"}, {"actor", "dependabot[bot]"}, {"ref", "refs/heads/main"},
		{"iss", "https://evil"}, {"exp", "9999999999"}, {"", "x"}, {"emoji", "🚢"},
		{"quote", `"}],"iss":"x`}, {"bad", "\xff"}, {"nul", "a\x00b"},
	} {
		f.Add(seed[0], seed[1])
	}
	s, err := tokensign.NewSigner(issuer, mustKey(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		tok, err := s.Sign(context.Background(), tokensign.Request{
			Audience: audience, Subject: subject, Lifetime: time.Minute, Now: t0,
			Claims: map[string]string{name: value},
		})
		if err != nil {
			return
		}
		idt, err := staticVerifier(s, t0).Verify(context.Background(), tok.Token)
		if err != nil {
			t.Fatalf("an accepted claim %q=%q broke verification: %v", name, value, err)
		}
		var all map[string]any
		if err := idt.Claims(&all); err != nil {
			t.Fatal(err)
		}
		if got, _ := all[name].(string); got != value {
			t.Errorf("claim %q = %q, want %q", name, all[name], value)
		}
		if all["iss"] != issuer || all["sub"] != subject || all["aud"] != audience || all["jti"] != tok.ID {
			t.Errorf("registered claims changed: %v", mustJSON(all))
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
