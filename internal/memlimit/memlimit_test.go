package memlimit

import (
	"io/fs"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestLimit(t *testing.T) {
	const v1Self = "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
	tests := []struct {
		name    string
		self    string
		fs      fstest.MapFS
		want    int64
		wantOK  bool
		wantErr string
	}{
		{"v2 in a container: its own limit at the root", "0::/\n",
			fstest.MapFS{"memory.max": file("268435456\n")}, 268435456, true, ""},
		{"v2 without a limit", "0::/\n",
			fstest.MapFS{"memory.max": file("max\n")}, 0, false, ""},
		{"v2 nested: the least of the cgroup's and its parents'", "0::/kubepods/pod1/ctr\n",
			fstest.MapFS{
				"kubepods/pod1/ctr/memory.max": file("max"),
				"kubepods/pod1/memory.max":     file("536870912"),
				"kubepods/memory.max":          file("1073741824"),
			}, 536870912, true, ""},
		{"v1 with the host's path but the container's files at the root", v1Self,
			fstest.MapFS{"memory/memory.limit_in_bytes": file("134217728\n")}, 134217728, true, ""},
		{"v1 with the path visible", v1Self,
			fstest.MapFS{
				"memory/docker/abc/memory.limit_in_bytes": file("134217728"),
				"memory/memory.limit_in_bytes":            file("9223372036854771712"),
			}, 134217728, true, ""},
		{"v1 without a limit: the largest page-aligned number", v1Self,
			fstest.MapFS{"memory/memory.limit_in_bytes": file("9223372036854771712")}, 0, false, ""},
		{"no limit file anywhere", "0::/\n", fstest.MapFS{}, 0, false, ""},
		{"a limit file that is not a number", "0::/\n",
			fstest.MapFS{"memory.max": file("lots")}, 0, false, `"lots" is not a number of bytes`},
		{"a negative limit", "0::/\n",
			fstest.MapFS{"memory.max": file("-1")}, 0, false, "not a number of bytes"},
		{"no cgroup at all", "garbage\n", fstest.MapFS{}, 0, false, "names no cgroup"},
		{"a path that climbs out stays inside", "0::/../../etc\n",
			fstest.MapFS{"etc/memory.max": file("1048576")}, 1048576, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := Limit(tt.fs, tt.self)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Errorf("Limit = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzLimit(f *testing.F) {
	f.Add("0::/a/b\n4:memory:/x\n", "123")
	f.Add("::\n0::", "max")
	f.Fuzz(func(t *testing.T, self, value string) {
		fsys := fstest.MapFS{"memory.max": file(value), "memory/memory.limit_in_bytes": file(value)}
		limit, ok, err := Limit(fsys, self)
		if err == nil && ok && limit <= 0 {
			t.Errorf("Limit(%q) = %d with ok", self, limit)
		}
	})
}

// Apply gives the runtime 90 % of the cgroup's limit, and leaves the
// runtime alone when the operator set GOMEMLIMIT, when there is no limit
// and when the limit cannot be read.
func TestApply(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	const untouched = 12345 << 20
	self := func(text string, err error) func() ([]byte, error) {
		return func() ([]byte, error) { return []byte(text), err }
	}
	limited := fstest.MapFS{"memory.max": file("1000000000")}
	env := func(v string) func(string) string { return func(string) string { return v } }
	tests := []struct {
		name    string
		getenv  func(string) string
		cgroups fstest.MapFS
		self    func() ([]byte, error)
		want    int64
		log     string
	}{
		{"a limit: 90 % of it", env(""), limited, self("0::/\n", nil), 900000000, "memory limit from the cgroup"},
		{"GOMEMLIMIT is the operator's", env("200MiB"), limited, self("0::/\n", nil), untouched, ""},
		{"no limit", env(""), fstest.MapFS{"memory.max": file("max")}, self("0::/\n", nil), untouched, ""},
		{"no cgroups", env(""), limited, self("", fs.ErrNotExist), untouched, ""},
		{"an unreadable limit", env(""), fstest.MapFS{"memory.max": file("?")}, self("0::/\n", nil), untouched, "GOMEMLIMIT left unset"},
		{"an unreadable /proc/self/cgroup", env(""), limited, self("", fs.ErrPermission), untouched, "GOMEMLIMIT left unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(untouched)
			var logs strings.Builder
			Apply(slog.New(slog.NewTextHandler(&logs, nil)), tt.getenv, tt.cgroups, tt.self)
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("memory limit = %d, want %d", got, tt.want)
			}
			if !strings.Contains(logs.String(), tt.log) || (tt.log == "" && logs.Len() > 0) {
				t.Errorf("log = %q, want %q", logs.String(), tt.log)
			}
		})
	}
}
