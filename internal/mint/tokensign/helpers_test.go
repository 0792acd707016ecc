package tokensign_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

func rsaSigningKey(t testing.TB) *tokensign.Key {
	t.Helper()
	k, err := tokensign.NewKey(rsaKey(t, 2048))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ed25519SigningKey(t testing.TB) *tokensign.Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokensign.NewKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
