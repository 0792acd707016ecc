package actions_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// What GitLab does with a CI/CD component at pipeline creation, for the
// parts the Ferry component uses: read the `spec: inputs:` header, check
// the include's inputs against it (an unknown input, a missing required
// one, a value of the wrong type, not among the options or not matching
// the regex are errors), then replace every $[[ inputs.NAME ]] in the
// configuration's keys and values. A value that is a block and nothing
// else keeps its input's type; inside a longer string it is text.
//
// Where GitLab versions differ, this follows the stricter one: older
// releases never match a regex against an empty string, so a regex on an
// input whose default is '' would fail there, and is an error here.

type inputSpec struct {
	Description string    `yaml:"description"`
	Default     yaml.Node `yaml:"default"`
	Type        string    `yaml:"type"`
	Options     []any     `yaml:"options"`
	Regex       string    `yaml:"regex"`
}

type componentHeader struct {
	Spec struct {
		Inputs map[string]*inputSpec `yaml:"inputs"`
	} `yaml:"spec"`
}

var interpolationBlock = regexp.MustCompile(`\$\[\[\s*(.*?)\s*\]\]`)

// renderComponent returns the configuration src adds to a pipeline when
// included with inputs.
func renderComponent(src []byte, inputs map[string]any) (map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var headNode, bodyNode yaml.Node
	if err := dec.Decode(&headNode); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := dec.Decode(&bodyNode); err != nil {
		return nil, fmt.Errorf("a component needs a header, ---, and the configuration: %w", err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than two YAML documents")
	}
	var head componentHeader
	if err := strictDecode(&headNode, &head); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	values, err := resolveInputs(head.Spec.Inputs, inputs)
	if err != nil {
		return nil, err
	}
	if err := interpolate(&bodyNode, values); err != nil {
		return nil, err
	}
	var out map[string]any
	if err := bodyNode.Decode(&out); err != nil {
		return nil, fmt.Errorf("configuration after interpolation: %w", err)
	}
	return out, nil
}

// strictDecode refuses keys the header does not know, as GitLab does.
func strictDecode(n *yaml.Node, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(n); err != nil {
		return err
	}
	d := yaml.NewDecoder(&buf)
	d.KnownFields(true)
	return d.Decode(v)
}

func resolveInputs(spec map[string]*inputSpec, given map[string]any) (map[string]any, error) {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(given)) {
		if _, ok := spec[name]; !ok {
			errs = append(errs, fmt.Errorf("unknown input arguments: %s", name))
		}
	}
	values := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(spec)) {
		s := spec[name]
		if s == nil {
			s = &inputSpec{}
		}
		v, isGiven := given[name]
		isDefault := false
		if !isGiven {
			if s.Default.Kind == 0 {
				errs = append(errs, fmt.Errorf("`%s` input: required value has not been provided", name))
				continue
			}
			if err := s.Default.Decode(&v); err != nil {
				errs = append(errs, fmt.Errorf("`%s` input: default: %w", name, err))
				continue
			}
			isDefault = true
		}
		which := "provided"
		if isDefault {
			which = "default"
		}
		switch s.Type {
		case "", "string":
			if _, ok := v.(string); !ok {
				errs = append(errs, fmt.Errorf("`%s` input: %s value is not a string", name, which))
				continue
			}
		case "number":
			switch v.(type) {
			case int, float64:
			default:
				errs = append(errs, fmt.Errorf("`%s` input: %s value is not a number", name, which))
				continue
			}
		case "boolean":
			if _, ok := v.(bool); !ok {
				errs = append(errs, fmt.Errorf("`%s` input: %s value is not a boolean", name, which))
				continue
			}
		default:
			errs = append(errs, fmt.Errorf("`%s` input: unknown type %q", name, s.Type))
			continue
		}
		if len(s.Options) > 0 && !slices.Contains(s.Options, v) {
			errs = append(errs, fmt.Errorf("`%s` input: `%v` cannot be used because it is not in the list of allowed options", name, v))
			continue
		}
		if s.Regex != "" {
			str, ok := v.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("`%s` input: RegEx validation can only be used with string inputs", name))
				continue
			}
			re, err := regexp.Compile(s.Regex)
			if err != nil {
				errs = append(errs, fmt.Errorf("`%s` input: invalid regular expression", name))
				continue
			}
			if strings.TrimSpace(str) == "" || !re.MatchString(str) {
				errs = append(errs, fmt.Errorf("`%s` input: %s value does not match required RegEx pattern", name, which))
				continue
			}
		}
		values[name] = v
	}
	return values, errors.Join(errs...)
}

// interpolate replaces the blocks in every key and scalar value under n.
func interpolate(n *yaml.Node, values map[string]any) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode, yaml.MappingNode:
		for _, c := range n.Content {
			if err := interpolate(c, values); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		return interpolateScalar(n, values)
	}
	return nil
}

func interpolateScalar(n *yaml.Node, values map[string]any) error {
	if !strings.Contains(n.Value, "$[[") {
		return nil
	}
	blocks := interpolationBlock.FindAllStringSubmatchIndex(n.Value, -1)
	if len(blocks) == 0 {
		return fmt.Errorf("line %d: %q is not a valid interpolation block", n.Line, n.Value)
	}
	lookup := func(expr string) (any, error) {
		if strings.Contains(expr, "|") {
			return nil, fmt.Errorf("line %d: interpolation functions (%q) are not used by the Ferry component", n.Line, expr)
		}
		key, ok := strings.CutPrefix(expr, "inputs.")
		if !ok {
			return nil, fmt.Errorf("line %d: unknown interpolation key: %q", n.Line, expr)
		}
		v, ok := values[key]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown interpolation key: `%s`", n.Line, key)
		}
		return v, nil
	}
	// The whole value is one block: it takes the input's type.
	if len(blocks) == 1 && blocks[0][0] == 0 && blocks[0][1] == len(n.Value) {
		v, err := lookup(n.Value[blocks[0][2]:blocks[0][3]])
		if err != nil {
			return err
		}
		n.Style = 0
		switch v := v.(type) {
		case string:
			n.Tag, n.Value = "!!str", v
		case bool:
			n.Tag, n.Value = "!!bool", strconv.FormatBool(v)
		case int:
			n.Tag, n.Value = "!!int", strconv.Itoa(v)
		case float64:
			n.Tag, n.Value = "!!float", strconv.FormatFloat(v, 'g', -1, 64)
		}
		return nil
	}
	var b strings.Builder
	last := 0
	for _, m := range blocks {
		v, err := lookup(n.Value[m[2]:m[3]])
		if err != nil {
			return err
		}
		b.WriteString(n.Value[last:m[0]])
		fmt.Fprint(&b, v)
		last = m[1]
	}
	b.WriteString(n.Value[last:])
	n.Value, n.Tag = b.String(), "!!str"
	return nil
}

// extendJob is `extends:` for one level: job's keys over base's, hashes
// merged deeply, anything else (before_script included) replaced.
func extendJob(base, job map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range job {
		if bm, ok := out[k].(map[string]any); ok {
			if jm, ok := v.(map[string]any); ok {
				out[k] = extendJob(bm, jm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// jobVariables turns a job's variables into environment entries: a value,
// or a {value, expand} hash.
func jobVariables(job map[string]any) ([]string, error) {
	vars, _ := job["variables"].(map[string]any)
	var env []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		v := vars[k]
		if h, ok := v.(map[string]any); ok {
			v = h["value"]
		}
		switch v := v.(type) {
		case string:
			env = append(env, k+"="+v)
		case int:
			env = append(env, k+"="+strconv.Itoa(v))
		case nil:
			env = append(env, k+"=")
		default:
			return nil, fmt.Errorf("variable %s: a %T is not a variable value", k, v)
		}
	}
	return env, nil
}

// scriptLines is a job's before_script, script or after_script.
func scriptLines(job map[string]any, key string) []string {
	list, _ := job[key].([]any)
	var out []string
	for _, l := range list {
		if s, ok := l.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
