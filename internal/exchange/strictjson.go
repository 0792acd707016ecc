package exchange

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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
	// After checkStrict only allowed keys are left, each once and spelt
	// exactly: a tag missing from v is the caller's bug, and refused rather
	// than dropped. json v2 matches names case-sensitively, as checkStrict
	// made sure the body does.
	if err := jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return badRequestf("request body is not the expected JSON object: %s", semanticProblem(err))
	}
	return nil
}

// semanticProblem says which field holds a value of the wrong type,
// naming JSON's types, never Go's.
func semanticProblem(err error) string {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) && se.GoType != nil {
		if field := strings.TrimPrefix(string(se.JSONPointer), "/"); field != "" && !strings.Contains(field, "/") {
			return fmt.Sprintf("field %q must be a %s", field, jsonKind(se.GoType.Kind()))
		}
		return "the body must be a JSON object"
	}
	return "malformed JSON"
}

// maxDepth bounds how deeply objects and arrays nest: the contract's
// bodies are flat, and the walk below recurses once a level.
const maxDepth = 32

// checkStrict walks body's tokens once, checking the rules decodeStrict
// states without decoding a value. jsontext finds syntax errors; the name
// rules are checked here, so that they are said in the contract's words.
func checkStrict(body []byte, allowed []string) error {
	if !utf8.Valid(body) {
		return badRequestf("request body is not valid UTF-8")
	}
	dec := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(dec)
	dec.Reset(bytes.NewReader(body), jsontext.AllowDuplicateNames(true))
	defer dec.Reset(empty) // hold no body while pooled
	tok, err := dec.ReadToken()
	switch {
	case errors.Is(err, io.EOF):
		return notAnObject("empty body")
	case err != nil:
		return tokenError(err)
	case tok.Kind() != '{':
		return notAnObject("the body must be a JSON object")
	}
	if err := checkObject(dec, allowed, 1); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return badRequestf("request body has data after the JSON object")
	}
	return nil
}

// decoders keeps the tokenizers checkStrict walks bodies with: each holds
// a read buffer that would otherwise be allocated and grown per request.
var decoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

var empty = bytes.NewReader(nil)

// checkObject checks an object whose '{' has been read, through its '}'.
// Depth 1 is the body itself, whose keys must be allowed ones.
func checkObject(dec *jsontext.Decoder, allowed []string, depth int) error {
	var seen foldedKeys
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return tokenError(err)
		}
		if err := checkKey(tok.String(), &seen, depth == 1, allowed); err != nil {
			return err
		}
		if err := checkValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken() // '}'
	return tokenError(err)
}

// checkValue checks the next value, nested objects and arrays included.
func checkValue(dec *jsontext.Decoder, depth int) error {
	switch dec.PeekKind() {
	case '{', '[':
	default:
		_, err := dec.ReadValue()
		return tokenError(err)
	}
	if depth >= maxDepth {
		return notAnObject(fmt.Sprintf("nested deeper than %d levels", maxDepth))
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return tokenError(err)
	}
	if tok.Kind() == '{' {
		return checkObject(dec, nil, depth+1)
	}
	for dec.PeekKind() != ']' {
		if err := checkValue(dec, depth+1); err != nil {
			return err
		}
	}
	_, err = dec.ReadToken() // ']'
	return tokenError(err)
}

func notAnObject(why string) error {
	return badRequestf("request body is not the expected JSON object: %s", why)
}

// tokenError describes a tokenizer error, nil for none; running out of
// input inside the object is truncation.
func tokenError(err error) error {
	var se *jsontext.SyntacticError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return notAnObject("truncated JSON")
	case errors.As(err, &se):
		return notAnObject(fmt.Sprintf("syntax error at byte %d", se.ByteOffset))
	}
	return notAnObject("malformed JSON")
}

// checkKey checks one key of an object whose keys so far are seen (by
// folded form); top says the object is the body itself, whose keys must
// be allowed ones spelt exactly.
func checkKey(key string, seen *foldedKeys, top bool, allowed []string) error {
	folded := foldKey(key)
	if prev, dup := seen.find(folded); dup {
		if prev == key {
			return badRequestf("field %s appears twice", quoteShort(key))
		}
		return badRequestf("fields %s and %s differ only in case", quoteShort(prev), quoteShort(key))
	}
	seen.add(folded, key)
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

// foldedKeys are an object's keys so far, by folded form: a list while
// short (the contract's objects have three keys), a map past that, so an
// object of many keys is not checked in quadratic time.
type foldedKeys struct {
	list []foldedKey
	m    map[string]string
}

type foldedKey struct{ folded, key string }

const maxListedKeys = 8

func (s *foldedKeys) find(folded string) (string, bool) {
	if s.m != nil {
		k, ok := s.m[folded]
		return k, ok
	}
	for _, k := range s.list {
		if k.folded == folded {
			return k.key, true
		}
	}
	return "", false
}

func (s *foldedKeys) add(folded, key string) {
	if s.m == nil && len(s.list) < maxListedKeys {
		s.list = append(s.list, foldedKey{folded, key})
		return
	}
	if s.m == nil {
		s.m = make(map[string]string, 2*maxListedKeys)
		for _, k := range s.list {
			s.m[k.folded] = k.key
		}
		s.list = nil
	}
	s.m[folded] = key
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
