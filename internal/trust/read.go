package trust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// Problem is one thing wrong with a policy or test file.
type Problem = yamlpos.Problem

// LoadError lists every problem found while loading; no policy of a set
// with problems is used.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string { return yamlpos.Join(e.Problems) }

func loadError(ps []Problem) *LoadError {
	yamlpos.Sort(ps)
	return &LoadError{Problems: ps}
}

// isTestFile reports whether name is a policy's test file, which the
// policy loader skips.
func isTestFile(name string) bool {
	return strings.HasSuffix(name, ".test.yaml") || strings.HasSuffix(name, ".test.yml")
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// IsPolicyFile reports whether LoadDir reads a file of this name: YAML,
// not a test file, not hidden (editors' and Kubernetes' own files).
func IsPolicyFile(name string) bool {
	return isYAML(name) && !isTestFile(name) && !strings.HasPrefix(name, ".")
}

// LoadDir loads every *.yaml and *.yml policy in dir (not its
// subdirectories, and not *.test.yaml), validates and compiles them. On
// any problem it returns a *LoadError and no Set.
func LoadDir(dir string, opts LoadOptions) (*Set, error) {
	files, problems := readDir(dir, IsPolicyFile, "read policy")
	set, err := LoadFiles(files, opts)
	var le *LoadError
	if errors.As(err, &le) {
		problems = append(problems, le.Problems...)
	}
	if len(problems) > 0 {
		return nil, loadError(problems)
	}
	return set, nil
}

// readDir reads the files of dir whose names pass want, keyed by path,
// with a problem for each that cannot be read.
func readDir(dir string, want func(string) bool, what string) (map[string][]byte, []Problem) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []Problem{{File: dir, Message: fmt.Sprintf("read policy directory: %v", pathErr(err))}}
	}
	files := map[string][]byte{}
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !want(name) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, Problem{File: path, Message: fmt.Sprintf("%s: %v", what, pathErr(err))})
			continue
		}
		files[path] = data
	}
	return files, problems
}

// pathErr drops the path os errors repeat, since Problem names the file.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// LoadFiles compiles policies from file contents keyed by path (the path
// names the file in problems and gives the default policy name). It is
// LoadDir without the file system, for tests, fuzzing and benchmarks.
func LoadFiles(files map[string][]byte, opts LoadOptions) (*Set, error) {
	if len(opts.Kinds) == 0 || len(opts.Platforms) == 0 {
		return nil, &LoadError{Problems: []Problem{{File: "(policies)", Message: "no grant kinds or platforms to load policies with"}}}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var problems []Problem
	byName := make(map[string]*Policy, len(files))
	sh := newShared()
	for _, path := range paths {
		fp := newFileParser(path, opts, sh)
		p := fp.parse(files[path])
		problems = append(problems, fp.Problems()...)
		if p == nil {
			continue
		}
		if prev, dup := byName[p.Name]; dup {
			problems = append(problems, Problem{File: path, Line: fp.nameLine, Col: fp.nameCol,
				Message: fmt.Sprintf("policy name %q is already used by %s", p.Name, prev.File)})
			continue
		}
		byName[p.Name] = p
	}
	if len(problems) > 0 {
		return nil, loadError(problems)
	}
	return newSet(byName, opts.Platforms), nil
}
