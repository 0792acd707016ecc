// Package trustpolicies holds Ferry's example trust policies, each with
// its test cases, embedded so that `ferry demo` runs from the binary
// alone.
package trustpolicies

import "embed"

// Files are the example policies and their *.test.yaml files.
//
//go:embed *.yaml
var Files embed.FS
