package claims

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// SyntaxError is a payload that is not one well-formed JSON object: bad
// syntax, a name given twice, invalid UTF-8, or text after the object.
type SyntaxError struct {
	Err error
}

func (e *SyntaxError) Error() string { return "decode claims: " + e.Err.Error() }

func (e *SyntaxError) Unwrap() error { return e.Err }

// SyntaxReason says what is wrong with a payload in words fit for the
// token's holder: the decoder's message without its package prefix, cut
// short, since it may quote a member name the token made up.
func SyntaxReason(err error) string {
	msg := strings.TrimPrefix(err.Error(), "decode claims: ")
	msg = strings.TrimPrefix(msg, "jsontext: ")
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "…"
	}
	return msg
}

// decoders keeps the tokenizers Parse reads payloads with: each holds a
// read buffer that would otherwise be allocated and grown for every token.
// Parse copies what it keeps out of the buffer.
var decoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

var noInput = bytes.NewReader(nil)

// Parse converts a JWT payload into a Set in one pass. The JSON must be
// one object with no name given twice and valid UTF-8 throughout: a token
// that two readers could read two ways is refused, not interpreted.
//
// A claim of the wrong type is a *TypeError returned together with the
// Set of everything else, so a verifier can still pick the issuer's keys
// and report the type only once the signature holds. Any other error is a
// *SyntaxError and the Set is nil.
func Parse(payload []byte) (*Set, error) {
	dec := decoders.Get().(*jsontext.Decoder)
	dec.Reset(bytes.NewReader(payload))
	defer func() {
		dec.Reset(noInput) // hold no payload while pooled
		decoders.Put(dec)
	}()
	if tok, err := dec.ReadToken(); err != nil {
		return nil, &SyntaxError{Err: err}
	} else if tok.Kind() != '{' {
		return nil, &SyntaxError{Err: errors.New("payload is not a JSON object")}
	}
	s := &Set{values: make(map[string]Value, 32), shapes: map[string]Kind{}}
	var typeErr error
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, &SyntaxError{Err: err}
		}
		name := tok.String()
		if err := s.read(dec, name); err != nil {
			var te *TypeError
			if !errors.As(err, &te) {
				return nil, &SyntaxError{Err: err}
			}
			typeErr = cmpFirst(typeErr, err)
		}
	}
	if _, err := dec.ReadToken(); err != nil { // }
		return nil, &SyntaxError{Err: err}
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, &SyntaxError{Err: errors.New("data after the JSON object")}
	}
	s.Issuer = s.values["iss"].Text
	s.Subject = s.values["sub"].Text
	s.ID = s.values["jti"].Text
	return s, typeErr
}

// cmpFirst keeps the first type error found.
func cmpFirst(have, err error) error {
	if have != nil {
		return have
	}
	return err
}

// read decodes the value of claim name into s. A *TypeError leaves the
// value consumed and the claim out of s.
func (s *Set) read(dec *jsontext.Decoder, name string) error {
	kind := dec.PeekKind()
	switch name {
	case "aud":
		aud, err := readAudience(dec)
		if err != nil {
			return err
		}
		s.Audience = aud
		return nil
	case "exp", "nbf", "iat":
		if kind != '0' {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			return &TypeError{Claim: name, Want: "a number", Got: kindOf(kind).jsonName()}
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return &TypeError{Claim: name, Want: "a number", Got: "number " + string(raw)}
		}
		t, err := numericDateSeconds(name, f)
		if err != nil {
			return err
		}
		s.setTime(name, t)
		return nil
	}
	var v Value
	switch kind {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		v = Value{Text: tok.String(), Kind: String}
	case '0':
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		v = Value{Text: string(raw), Kind: Number}
	case 't', 'f':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		v = Value{Text: strconv.FormatBool(tok.Bool()), Kind: Bool}
	case 'n':
		// JSON null carries no value: the claim is absent.
		_, err := dec.ReadToken()
		return err
	default:
		if err := dec.SkipValue(); err != nil {
			return err
		}
		v.Kind = kindOf(kind)
	}
	if jwtStrings[name] && v.Kind != String {
		return &TypeError{Claim: name, Want: "a string", Got: v.Kind.String()}
	}
	if v.Kind == List || v.Kind == Object {
		s.shapes[name] = v.Kind
		return nil
	}
	s.values[name] = v
	return nil
}

func readAudience(dec *jsontext.Decoder) ([]string, error) {
	const want = "a string or list of strings"
	switch kind := dec.PeekKind(); kind {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		return []string{tok.String()}, nil
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		var out []string
		var bad error
		for dec.PeekKind() != ']' {
			k := dec.PeekKind()
			if k != '"' {
				if err := dec.SkipValue(); err != nil {
					return nil, err
				}
				bad = cmpFirst(bad, &TypeError{Claim: "aud", Want: want, Got: "a list holding " + kindOf(k).jsonName()})
				continue
			}
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			out = append(out, tok.String())
		}
		if _, err := dec.ReadToken(); err != nil { // ]
			return nil, err
		}
		if bad != nil {
			return nil, bad
		}
		return out, nil
	default:
		if err := dec.SkipValue(); err != nil {
			return nil, err
		}
		return nil, &TypeError{Claim: "aud", Want: want, Got: kindOf(kind).jsonName()}
	}
}

// kindOf is the Kind of a value whose jsontext kind is k.
func kindOf(k jsontext.Kind) Kind {
	switch k {
	case '"':
		return String
	case '0':
		return Number
	case 't', 'f':
		return Bool
	case '[':
		return List
	case 'n':
		return 0
	}
	return Object
}

// jsonName names a kind as JSON calls it, "null" for none.
func (k Kind) jsonName() string {
	if k == 0 {
		return "null"
	}
	return k.String()
}

// numericDateSeconds converts a JWT NumericDate, in seconds.
func numericDateSeconds(name string, f float64) (time.Time, error) {
	if f < 0 || f > 1e11 {
		return time.Time{}, &TypeError{Claim: name, Want: "a date in seconds since 1970", Got: fmt.Sprint(f)}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), nil
}
