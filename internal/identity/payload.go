package identity

import (
	"fmt"
	"strings"

	"github.com/ferry-broker/ferry/internal/claims"
)

// registered are the claims go-oidc's verifier decoded into typed fields.
// encoding/json matches struct fields case-insensitively, so go-oidc read
// "ISS" (or "ſub", with a long s) as iss (sub) and refused or accepted the
// token depending on which came last; Ferry refuses such a token outright,
// so no two readers can ever see two different registered claims.
var registered = [...]string{"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "_claim_names", "_claim_sources"}

// checkRegistered repeats the checks go-oidc's claim decoding made that
// claims.FromMap does not (FromMap already requires iss and sub to be
// strings, aud a string or list of strings, and exp, iat and nbf numbers,
// which is at least as strict as go-oidc).
func checkRegistered(set *claims.Set) error {
	var variant error
	set.EachName(func(name string) {
		if variant != nil || !foldable(name) {
			return
		}
		for _, r := range registered {
			if name != r && strings.EqualFold(name, r) {
				variant = fmt.Errorf("claim %s differs from the registered claim %q only in case", claims.Describe(name), r)
				return
			}
		}
	})
	if variant != nil {
		return variant
	}
	for _, name := range [...]string{"nonce", "at_hash"} {
		if k := set.Kind(name); k != 0 && k != claims.String {
			return &claims.TypeError{Claim: name, Want: "a string", Got: k.String()}
		}
	}
	// go-oidc checked that each distributed claim names a source and
	// otherwise left them unresolved. CI platforms never send them, and a
	// claim whose value lives elsewhere cannot be matched by a policy, so
	// Ferry refuses them rather than half-accepting them.
	for _, name := range [...]string{"_claim_names", "_claim_sources"} {
		if set.Kind(name) != 0 {
			return fmt.Errorf("claim %q (distributed claims) is not supported", name)
		}
	}
	return nil
}

// foldable reports whether name might equal a registered claim under
// Unicode case folding without being equal to it: every registered name is
// lower-case ASCII, so only a name with an upper-case ASCII letter or a
// non-ASCII byte can.
func foldable(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 0x80 || ('A' <= c && c <= 'Z') {
			return true
		}
	}
	return false
}
