package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// decodeStrict decodes body, one JSON object whose keys are among allowed,
// into v (a struct whose json tags are those keys). It refuses what JSON
// parsers disagree on, so that a gateway or WAF in front of the broker
// that reads the body sees the request the broker acts on:
//
//   - a key twice in any object of the body: Go keeps the last, most
//     gateways the first;
//   - a key that differs from an allowed one only in case or by Unicode
//     case folding ("Policy", or "token" with the Kelvin sign U+212A for
//     its k): Go matches struct fields that way, others do not;
//   - within any object, two keys that fold to one another, for the same
//     reason one level down;
//   - invalid UTF-8, which Go replaces and others reject or pass through;
//   - anything after the object.
//
// Every refusal is a *badRequest that never quotes a value, only a key the
// contract names or one the caller wrote of at most maxEchoed bytes.
func decodeStrict(body []byte, v any, allowed ...string) error {
	if err := checkStrict(body, allowed); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	// After checkStrict only allowed keys are left: a tag missing from v is
	// the caller's bug, and refused rather than dropped.
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequestf("request body is not the expected JSON object: %s", jsonProblem(err))
	}
	return nil
}

// maxDepth bounds how deeply objects and arrays nest: the contract's
// bodies are flat, and the walk below recurses once a level.
const maxDepth = 32

// checkStrict walks body's tokens once, checking the rules decodeStrict
// states without decoding a value.
func checkStrict(body []byte, allowed []string) error {
	if !utf8.Valid(body) {
		return badRequestf("request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers stay text: none overflows here
	tok, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return notAnObject("empty body")
	case err != nil:
		return tokenError(err)
	case tok != json.Delim('{'):
		return notAnObject("the body must be a JSON object")
	}
	if err := checkObject(dec, allowed, 1); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequestf("request body has data after the JSON object")
	}
	return nil
}

// checkObject checks an object whose '{' has been read, through its '}'.
// Depth 1 is the body itself, whose keys must be allowed ones.
func checkObject(dec *json.Decoder, allowed []string, depth int) error {
	seen := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return tokenError(err)
		}
		key, ok := tok.(string)
		if !ok { // the decoder lets only a string through here
			return notAnObject("malformed JSON")
		}
		if err := checkKey(key, seen, depth == 1, allowed); err != nil {
			return err
		}
		if err := checkValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return tokenError(err)
}

// checkValue checks the next value, nested objects and arrays included.
func checkValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return tokenError(err)
	}
	d, nested := tok.(json.Delim)
	if !nested {
		return nil
	}
	if depth >= maxDepth {
		return notAnObject(fmt.Sprintf("nested deeper than %d levels", maxDepth))
	}
	if d == '{' {
		return checkObject(dec, nil, depth+1)
	}
	for dec.More() {
		if err := checkValue(dec, depth+1); err != nil {
			return err
		}
	}
	_, err = dec.Token() // ']'
	return tokenError(err)
}

func notAnObject(why string) error {
	return badRequestf("request body is not the expected JSON object: %s", why)
}

// tokenError describes a tokenizer error, nil for none; running out of
// input inside the object is truncation.
func tokenError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return notAnObject("truncated JSON")
	}
	return notAnObject(jsonProblem(err))
}

// checkKey checks one key of an object whose keys so far are seen (by
// folded form); top says the object is the body itself, whose keys must
// be allowed ones spelt exactly.
func checkKey(key string, seen map[string]string, top bool, allowed []string) error {
	folded := foldKey(key)
	if prev, dup := seen[folded]; dup {
		if prev == key {
			return badRequestf("field %s appears twice", quoteShort(key))
		}
		return badRequestf("fields %s and %s differ only in case", quoteShort(prev), quoteShort(key))
	}
	seen[folded] = key
	if !top || slices.Contains(allowed, key) {
		return nil
	}
	for _, a := range allowed {
		if foldKey(a) == folded {
			return badRequestf("field %s is not %q: field names are case-sensitive", quoteShort(key), a)
		}
	}
	return badRequestf("unknown field %s (allowed: %s)", quoteShort(key), strings.Join(allowed, ", "))
}

// foldKey maps a key to one representative of its case-folding orbit, so
// that two keys fold to the same string exactly when Unicode simple case
// folding makes them equal ("K", "k" and the Kelvin sign; "s", "S", "ſ").
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// maxEchoed is the longest text of the caller's a refusal quotes back:
// field names and durations are short, and a long one may be a token
// pasted in the wrong place.
const maxEchoed = 32

// quoteShort quotes text the caller wrote, unless it is long enough to be
// something other than a name.
func quoteShort(s string) string {
	if len(s) > maxEchoed {
		return fmt.Sprintf("(%d bytes, not quoted)", len(s))
	}
	return fmt.Sprintf("%q", s)
}
