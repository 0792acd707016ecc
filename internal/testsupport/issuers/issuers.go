// Package issuers starts the local GitHub-style and GitLab-style OIDC
// issuers the end-to-end tests sign CI tokens with, and signs and writes
// those tokens. It lives apart from devissuer, which the shipped binary
// links for `ferry demo`, so that `testing` stays out of the binary.
package issuers

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-broker/ferry/internal/devissuer"
)

// Start runs a GitHub-style and a GitLab-style issuer on loopback until the
// test ends.
func Start(t testing.TB) (github, gitlab *devissuer.Issuer) {
	t.Helper()
	return start(t, devissuer.GitHub), start(t, devissuer.GitLab)
}

func start(t testing.TB, flavor devissuer.Flavor) *devissuer.Issuer {
	t.Helper()
	is, err := devissuer.Start(devissuer.Options{Flavor: flavor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { is.Close() })
	return is
}

// Sign returns a token of is carrying the named sample payload (see
// devissuer.SampleClaims), edited by edit when it is not nil.
func Sign(t testing.TB, is *devissuer.Issuer, sample string, edit func(map[string]any)) string {
	t.Helper()
	c, err := devissuer.SampleClaims(sample)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(c)
	}
	tok, err := is.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// WriteToken signs as Sign does and writes the token to a 0600 file in the
// test's temporary directory, for `ferry exchange --token-file`.
func WriteToken(t testing.TB, is *devissuer.Issuer, sample string, edit func(map[string]any)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(Sign(t, is, sample, edit)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
