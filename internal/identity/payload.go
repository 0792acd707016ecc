package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferry-broker/ferry/internal/claims"
)

// decodePayload decodes a token's payload once, the way claims.Parse
// does (numbers kept as json.Number, so a long id keeps every digit), and
// refuses what json.Unmarshal, and so go-oidc, refused: anything but one
// JSON object, with nothing after it.
func decodePayload(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	if fields == nil {
		return nil, errors.New("decode payload: null is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode payload: data after the JSON object")
	}
	return fields, nil
}

// issuerOf returns the payload's iss, the only claim read before the
// signature is checked.
func issuerOf(fields map[string]any) (string, error) {
	v, ok := fields["iss"]
	if !ok || v == nil {
		return "", tokenErrorf("token has no iss claim")
	}
	iss, ok := v.(string)
	if !ok {
		return "", tokenErrorf("token payload is not a JSON object with a string iss: iss is %s", jsonType(v))
	}
	return iss, nil
}

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
func checkRegistered(fields map[string]any) error {
	for name := range fields {
		if !foldable(name) {
			continue
		}
		for _, r := range registered {
			if name != r && strings.EqualFold(name, r) {
				return fmt.Errorf("claim %s differs from the registered claim %q only in case", claims.Describe(name), r)
			}
		}
	}
	for _, name := range [...]string{"nonce", "at_hash"} {
		if v := fields[name]; v != nil {
			if _, ok := v.(string); !ok {
				return &claims.TypeError{Claim: name, Want: "a string", Got: jsonType(v)}
			}
		}
	}
	// go-oidc checked that each distributed claim names a source and
	// otherwise left them unresolved. CI platforms never send them, and a
	// claim whose value lives elsewhere cannot be matched by a policy, so
	// Ferry refuses them rather than half-accepting them.
	for _, name := range [...]string{"_claim_names", "_claim_sources"} {
		if fields[name] != nil {
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

// jsonType names a decoded JSON value's type for an error message.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
