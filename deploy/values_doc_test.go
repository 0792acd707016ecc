package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestChartREADMEDocumentsEveryValue: each value in values.yaml has a row
// in the README's table (itself or an enclosing key), and each row names
// a value that exists.
func TestChartREADMEDocumentsEveryValue(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	exists := map[string]bool{}
	var leaves []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			exists[path] = true
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(path, sub)
			} else {
				leaves = append(leaves, path)
			}
		}
	}
	walk("", values)

	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
		if !exists[m[1]] {
			t.Errorf("README documents %s, which values.yaml does not have", m[1])
		}
	}
	if len(documented) == 0 {
		t.Fatal("README has no values table")
	}
	sort.Strings(leaves)
	for _, leaf := range leaves {
		covered := false
		for p := leaf; p != ""; p = p[:max(strings.LastIndex(p, "."), 0)] {
			if documented[p] {
				covered = true
				break
			}
		}
		if !covered {
			t.Errorf("values.yaml has %s, which the README's table does not document", leaf)
		}
	}
}
