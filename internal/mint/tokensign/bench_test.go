package tokensign_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// BenchmarkSign compares the signing cost of the key types: it is CPU spent
// on every token exchange.
func BenchmarkSign(b *testing.B) {
	keys := []struct {
		name string
		key  *tokensign.Key
	}{
		{"ES256", mustKey(b)},
		{"RS256-2048", rsaSigningKey(b)},
		{"EdDSA", ed25519SigningKey(b)},
	}
	req := tokensign.Request{
		Audience: audience, Subject: subject, Lifetime: 5 * time.Minute,
		Claims: map[string]string{"repository": "acme/app", "ref": "refs/heads/main", "run_id": "123"},
	}
	for _, k := range keys {
		b.Run(k.name, func(b *testing.B) {
			s, err := tokensign.NewSigner(issuer, k.key)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
