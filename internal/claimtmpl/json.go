package claimtmpl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// JSON is a JSON document held as an ordered tree whose string values may
// be templates, so that claims are filled into string leaves and the result
// is marshalled, never spliced: a claim can never close a string or add a
// key. An AWS session policy is one.
type JSON struct {
	root jsonValue
}

type (
	jsonValue  any
	jsonObject []jsonMember
	jsonArray  []jsonValue
	jsonString struct {
		s string
		t *Template // nil for a literal
	}
	jsonLiteral string // a number, true, false or null, already valid JSON
)

type jsonMember struct {
	key string
	val jsonValue
}

// maxJSONDepth bounds nesting, so a hostile file cannot exhaust the stack.
const maxJSONDepth = 64

// ParseJSON parses JSON text whose string values may hold templates.
// Templates in object keys are refused.
func ParseJSON(s string) (*JSON, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	v, err := jsonNext(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected text after the JSON value")
	}
	return &JSON{root: v}, nil
}

func jsonNext(dec *json.Decoder, depth int) (jsonValue, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Delim:
		switch x {
		case '{':
			obj := jsonObject{}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				if seen[key] {
					return nil, fmt.Errorf("key %q appears twice", key)
				}
				if strings.Contains(key, "{{") {
					return nil, errors.New("templates are allowed in string values, not in keys")
				}
				seen[key] = true
				v, err := jsonNext(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj = append(obj, jsonMember{key: key, val: v})
			}
			_, err := dec.Token() // '}'
			return obj, err
		case '[':
			arr := jsonArray{}
			for dec.More() {
				v, err := jsonNext(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token() // ']'
			return arr, err
		}
		return nil, fmt.Errorf("unexpected %v", x)
	case string:
		t, err := Parse(x)
		if err != nil {
			return nil, err
		}
		return jsonString{s: x, t: t}, nil
	case json.Number:
		return jsonLiteral(x.String()), nil
	case bool:
		return jsonLiteral(strconv.FormatBool(x)), nil
	case nil:
		return jsonLiteral("null"), nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// ReadJSON converts a YAML value to a JSON tree, parsing templates in string
// values and recording a problem for everything JSON cannot hold.
func ReadJSON(r *yamlpos.Reader, n *yaml.Node, what string) (*JSON, bool) {
	v, ok := yamlToJSON(r, n, what, 0)
	if !ok {
		return nil, false
	}
	return &JSON{root: v}, true
}

func yamlToJSON(r *yamlpos.Reader, n *yaml.Node, what string, depth int) (jsonValue, bool) {
	if depth > maxJSONDepth {
		r.Errorf(n, "%s is nested too deeply", what)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		ps, ok := r.Pairs(n, what)
		obj := make(jsonObject, 0, len(ps))
		for _, p := range ps {
			if p.Key.ShortTag() != "!!str" {
				r.Errorf(p.Key, "%s: key %q must be a string", what, p.Key.Value)
				ok = false
				continue
			}
			if strings.Contains(p.Key.Value, "{{") {
				r.Errorf(p.Key, "%s: templates are allowed in string values, not in keys", what)
				ok = false
				continue
			}
			v, good := yamlToJSON(r, p.Val, what, depth+1)
			ok = ok && good
			obj = append(obj, jsonMember{key: p.Key.Value, val: v})
		}
		return obj, ok
	case yaml.SequenceNode:
		arr := make(jsonArray, 0, len(n.Content))
		ok := true
		for _, e := range n.Content {
			v, good := yamlToJSON(r, e, what, depth+1)
			ok = ok && good
			arr = append(arr, v)
		}
		return arr, ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			t, err := Parse(n.Value)
			if err != nil {
				r.Errorf(n, "%s: %v", what, err)
				return nil, false
			}
			return jsonString{s: n.Value, t: t}, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err == nil {
				return jsonLiteral(strconv.FormatBool(b)), true
			}
		case "!!int":
			var i int64
			if err := n.Decode(&i); err == nil {
				return jsonLiteral(strconv.FormatInt(i, 10)), true
			}
		case "!!float":
			var f float64
			if err := n.Decode(&f); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return jsonLiteral(strconv.FormatFloat(f, 'g', -1, 64)), true
			}
		case "!!null":
			return jsonLiteral("null"), true
		}
	}
	r.Errorf(n, "%s: %q cannot be written as JSON", what, n.Value)
	return nil, false
}

// IsObject reports whether the document is a JSON object.
func (j *JSON) IsObject() bool {
	_, ok := j.root.(jsonObject)
	return ok
}

// HasKey reports whether the document is an object with a top-level key.
func (j *JSON) HasKey(key string) bool {
	obj, _ := j.root.(jsonObject)
	for _, m := range obj {
		if m.key == key {
			return true
		}
	}
	return false
}

// HasTemplate reports whether any string value holds a template.
func (j *JSON) HasTemplate() bool { return hasTemplate(j.root) }

func hasTemplate(v jsonValue) bool {
	switch x := v.(type) {
	case jsonObject:
		for _, m := range x {
			if hasTemplate(m.val) {
				return true
			}
		}
	case jsonArray:
		for _, e := range x {
			if hasTemplate(e) {
				return true
			}
		}
	case jsonString:
		return x.t != nil
	}
	return false
}

// String is the document compact, templates as written.
func (j *JSON) String() string {
	var buf bytes.Buffer
	// Without claims nothing is substituted, so nothing can fail.
	_ = encodeJSON(&buf, j.root, "", nil)
	return buf.String()
}

// Render is the document compact with every template filled in from c,
// each value checked for field; a failure is an *Error.
func (j *JSON) Render(field string, c *claims.Set) (string, error) {
	var buf bytes.Buffer
	if err := encodeJSON(&buf, j.root, field, c); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// encodeJSON writes v compactly; with c nil, templates are written as is.
func encodeJSON(buf *bytes.Buffer, v jsonValue, field string, c *claims.Set) error {
	switch x := v.(type) {
	case jsonObject:
		buf.WriteByte('{')
		for i, m := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, m.key)
			buf.WriteByte(':')
			if err := encodeJSON(buf, m.val, field, c); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case jsonArray:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeJSON(buf, e, field, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case jsonString:
		s := x.s
		if x.t != nil && c != nil {
			var err error
			if s, err = x.t.Render(field, c); err != nil {
				return err
			}
		}
		writeJSONString(buf, s)
	case jsonLiteral:
		buf.WriteString(string(x))
	default:
		return fmt.Errorf("unexpected JSON node %T", v)
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	// Encoding a string cannot fail.
	_ = enc.Encode(s)
	buf.Truncate(buf.Len() - 1) // Encode's newline
}
