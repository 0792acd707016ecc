package trust

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
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

// Limits of a policy file, checked at load so that no policy can make
// loading or evaluating it costly: every request naming a policy pays for
// its size, and a refused request does not spend the CI token, so one
// token could repeat the cost at will.
const (
	// MaxFileBytes is the largest policy (or test) file read.
	MaxFileBytes = 1 << 20
	// MaxListItems is the most entries a list or mapping of a policy file
	// may hold: any-of lists, deny blocks, grant lists, every one.
	MaxListItems = 1000
)

// ReadPolicyFiles reads the policy files of dir exactly as LoadDir does,
// keyed by path: only regular files, and symlinks that resolve inside dir
// (a Kubernetes ConfigMap's files are links into its ..data directory);
// none over MaxFileBytes. A file refused or unreadable is a problem, and
// its content is never read; a directory that cannot be read is an
// error. The policy store fingerprints what this returns, so a reload
// sees what a load would.
func ReadPolicyFiles(dir string) (map[string][]byte, []Problem, error) {
	return readFiles(dir, IsPolicyFile, "read policy")
}

// readDir is readFiles with a directory that cannot be read as a problem.
func readDir(dir string, want func(string) bool, what string) (map[string][]byte, []Problem) {
	files, problems, err := readFiles(dir, want, what)
	if err != nil {
		return nil, []Problem{{File: dir, Message: fmt.Sprintf("read policy directory: %v", pathErr(err))}}
	}
	return files, problems
}

// readFiles reads the files of dir whose names pass want, keyed by path,
// with a problem for each that is refused or cannot be read. It reads
// through an os.Root, so a symlink swapped to point outside dir between
// the check and the read is refused all the same.
func readFiles(dir string, want func(string) bool, what string) (map[string][]byte, []Problem, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return nil, nil, err
	}
	files := map[string][]byte{}
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !want(name) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := readFile(root, dir, e)
		if err != nil {
			problems = append(problems, Problem{File: path, Message: fmt.Sprintf("%s: %v", what, pathErr(err))})
			continue
		}
		files[path] = data
	}
	return files, problems, nil
}

// readFile reads one entry of root (the directory dir), refusing what
// LoadDir refuses before reading a byte of it.
func readFile(root *os.Root, dir string, e fs.DirEntry) ([]byte, error) {
	name := e.Name()
	if e.Type()&fs.ModeSymlink != 0 {
		if err := insideDir(dir, name); err != nil {
			return nil, err
		}
	}
	info, err := root.Stat(name)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if info.Size() > MaxFileBytes {
		return nil, tooBig(info.Size())
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may have grown since Stat: never read past the limit.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, tooBig(int64(len(data)))
	}
	return data, nil
}

// insideDir checks that the symlink dir/name resolves inside dir, saying
// where it leads when it does not.
func insideDir(dir, name string) error {
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	target, err := filepath.EvalSymlinks(filepath.Join(base, name))
	if err != nil {
		return fmt.Errorf("symlink that resolves to nothing: %w", pathErr(err))
	}
	rel, err := filepath.Rel(base, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("symlink to %s, which is outside the policy directory; copy the file in instead", target)
	}
	return nil
}

func tooBig(size int64) error {
	return fmt.Errorf("file is %d bytes, over the limit of %d (1 MiB)", size, MaxFileBytes)
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
				Message: fmt.Sprintf("policy name %q is already used by %s", p.Name, prev.File())})
			continue
		}
		byName[p.Name] = p
	}
	if len(problems) > 0 {
		return nil, loadError(problems)
	}
	return newSet(byName, opts.Platforms), nil
}
