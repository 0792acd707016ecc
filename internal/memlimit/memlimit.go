// Package memlimit gives the Go collector the memory limit of the
// container a broker runs in, so that near the limit it collects harder
// instead of letting the heap's headroom (twice the live heap, or the heap
// floor) reach the limit and the kernel kill the process.
//
// Go sets GOMAXPROCS from a cgroup's CPU limit but leaves GOMEMLIMIT
// unset; this is the memory half, read from the same cgroup files. An
// operator's GOMEMLIMIT always wins.
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction is the share of the cgroup's limit given to the Go runtime.
// The rest is for what the runtime does not count: the executable's
// pages, which the kernel charges to the cgroup too (about 24 MiB for
// ferry), and thread stacks outside the heap.
const Fraction = 0.9

// noLimit is cgroup v1's way of saying none: the largest page-aligned
// int64, or anything near it.
const noLimit = 1 << 62

// Limit returns the memory limit that applies to the cgroup named in
// selfCgroup (the text of /proc/self/cgroup), read from fsys (the cgroup
// file systems, as mounted at /sys/fs/cgroup): cgroup v2's memory.max or
// v1's memory.limit_in_bytes. A parent's limit bounds its children, so it
// is the least of the cgroup's and its ancestors' that fsys shows; inside
// a container fsys often shows only the container's own, at its root. ok
// is false when no limit is set.
func Limit(fsys fs.FS, selfCgroup string) (limit int64, ok bool, err error) {
	v1, v2, err := paths(selfCgroup)
	if err != nil {
		return 0, false, err
	}
	limit = math.MaxInt64
	// look reads file in dir and each of its parents up to the
	// hierarchy's root.
	look := func(root, dir, file string) error {
		for d := dir; ; d = path.Dir(d) {
			n, found, err := readLimit(fsys, path.Join(root, d, file))
			if err != nil {
				return err
			}
			if found {
				limit, ok = min(limit, n), true
			}
			if d == "." {
				return nil
			}
		}
	}
	if v2 != "" {
		if err := look(".", v2, "memory.max"); err != nil {
			return 0, false, err
		}
	}
	if v1 != "" {
		if err := look("memory", v1, "memory.limit_in_bytes"); err != nil {
			return 0, false, err
		}
	}
	return limit, ok, nil
}

// paths finds, in /proc/self/cgroup, the cgroup v1 memory controller's
// path and the cgroup v2 path, each relative to its hierarchy's root.
func paths(selfCgroup string) (v1, v2 string, err error) {
	sc := bufio.NewScanner(strings.NewReader(selfCgroup))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		rel := strings.TrimPrefix(path.Clean("/"+fields[2]), "/")
		if rel == "" {
			rel = "."
		}
		switch {
		case fields[0] == "0" && fields[1] == "":
			v2 = rel
		case containsController(fields[1], "memory"):
			v1 = rel
		}
	}
	if v1 == "" && v2 == "" {
		return "", "", errors.New("read memory limit: /proc/self/cgroup names no cgroup")
	}
	return v1, v2, nil
}

func containsController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads one limit file; found is false when the file is not
// there or says there is no limit.
func readLimit(fsys fs.FS, name string) (n int64, found bool, err error) {
	data, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read memory limit %s: %w", name, err)
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, false, nil
	}
	n, err = strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, fmt.Errorf("read memory limit %s: %q is not a number of bytes", name, s)
	}
	return n, n < noLimit, nil
}

// System returns where Linux shows a process its cgroups: the cgroup file
// systems and a reader of /proc/self/cgroup.
func System() (cgroups fs.FS, self func() ([]byte, error)) {
	return os.DirFS("/sys/fs/cgroup"), func() ([]byte, error) { return os.ReadFile("/proc/self/cgroup") }
}

// Apply sets the runtime's memory limit to Fraction of the cgroup's (read
// from cgroups and self, as System gives them), unless the operator set
// GOMEMLIMIT (getenv is os.Getenv) or there is no limit, and says what it
// did. A limit it cannot read is reported and changes nothing: the broker
// then runs as Go would run it.
func Apply(logger *slog.Logger, getenv func(string) string, cgroups fs.FS, self func() ([]byte, error)) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	text, err := self()
	if errors.Is(err, fs.ErrNotExist) {
		return // not Linux, or no cgroups: nothing to follow
	}
	if err != nil {
		logger.Warn("memory limit: cannot read /proc/self/cgroup; GOMEMLIMIT left unset", "err", err)
		return
	}
	limit, ok, err := Limit(cgroups, string(text))
	if err != nil {
		logger.Warn("memory limit: the cgroup's is unreadable; GOMEMLIMIT left unset", "err", err)
		return
	}
	if !ok {
		return
	}
	set := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(set)
	logger.Info("memory limit from the cgroup", "cgroup_limit_bytes", limit, "gomemlimit_bytes", set)
}
