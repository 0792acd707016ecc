package yamlpos

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Documents decodes the YAML documents of data, at most max of them (a
// further one is decoded only to be counted: the result then has max+1
// entries). Each is a yaml.DocumentNode; Root gives its content. A syntax
// error ends reading and is returned as a problem at its line.
func Documents(file string, data []byte, max int) ([]*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for len(docs) <= max {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p := SyntaxProblem(file, data, err)
			return docs, &p
		}
		docs = append(docs, &doc)
	}
	return docs, nil
}

// Root is a document's content node, nil for an empty document.
func Root(doc *yaml.Node) *yaml.Node {
	if doc == nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	return doc.Content[0]
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// parserMessages are the messages of yaml.v3's parser (as opposed to its
// scanner). yaml.v3 v3.0.1 reports their line 0-based and the scanner's
// 1-based; lines of these are corrected.
var parserMessages = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// SyntaxProblem turns a yaml.v3 decoding error into a problem at the line it
// names, corrected to 1-based and to a line the file has. yaml.v3 gives no
// column: it is 1. yaml.v3's syntax messages describe the text and never
// echo a value.
func SyntaxProblem(file string, data []byte, err error) Problem {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return Problem{File: file, Line: 1, Col: 1, Message: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	if parserMessages[m[2]] {
		line++
	}
	// An error noticed at the end of the input names the line after the
	// last; the last is where the reader can look.
	line = min(max(line, 1), lineCount(data))
	return Problem{File: file, Line: line, Col: 1, Message: "YAML: " + m[2]}
}

func lineCount(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return max(n, 1)
}
