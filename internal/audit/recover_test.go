package audit

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenRecoversATornFinalRecord(t *testing.T) {
	other := func(l []string) string { // a whole record of another chain
		var buf bytes.Buffer
		New(&buf, strings.Repeat("ab", 32)).Write(context.Background(), sample(9))
		return strings.TrimSuffix(buf.String(), "\n")
	}
	tests := []struct {
		name      string
		keep      int                     // complete lines of the 4 written that stay
		torn      func(l []string) string // what follows them, without a newline
		completed bool                    // the torn bytes were a whole record: kept
	}{
		{"a last line cut in the middle", 3, func(l []string) string { return l[3][:len(l[3])/2] }, false},
		{"a last line missing its closing brace", 3, func(l []string) string { return l[3][:len(l[3])-2] }, false},
		{"only the first byte of a record", 3, func([]string) string { return "{" }, false},
		{"zeros where the data never reached the disk", 3, func([]string) string { return strings.Repeat("\x00", 300) }, false},
		{"a whole record missing only its newline", 3, func(l []string) string { return strings.TrimSuffix(l[3], "\n") }, true},
		{"a whole record that does not chain to the line before", 3, other, false},
		{"a first record cut short", 0, func(l []string) string { return l[0][:50] }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 4)
			lines := readLines(t, path)
			kept := strings.Join(lines[:tt.keep], "")
			torn := tt.torn(lines)
			if err := os.WriteFile(path, []byte(kept+torn), 0o600); err != nil {
				t.Fatal(err)
			}
			// What verify says before the repair.
			f, _ := os.Open(path)
			_, err := Verify(f)
			f.Close()
			if ce, ok := err.(*ChainError); !ok || !ce.Incomplete || ce.Line != tt.keep+1 {
				t.Errorf("Verify before repair = %v, want an incomplete final record on line %d", err, tt.keep+1)
			}

			var logs bytes.Buffer
			l, err := Open(path, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			if err != nil {
				t.Fatalf("Open of a file with a torn final record: %v", err)
			}
			rec := l.Recovered()
			if rec == nil || rec.Offset != int64(len(kept)) || rec.Bytes != len(torn) || rec.Completed != tt.completed {
				t.Fatalf("Recovered = %+v, want offset %d, %d bytes, completed %v", rec, len(kept), len(torn), tt.completed)
			}
			if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), path) {
				t.Errorf("the repair was not logged as a warning naming the file:\n%s", logs.String())
			}
			want := kept
			if tt.completed {
				want += torn + "\n"
				if rec.SavedTo != "" {
					t.Errorf("a completed record was also saved to %s", rec.SavedTo)
				}
			} else {
				saved, err := os.ReadFile(rec.SavedTo)
				if err != nil || string(saved) != torn {
					t.Errorf("saved torn bytes = %q, %v; want %q", saved, err, torn)
				}
				if fi, err := os.Stat(rec.SavedTo); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("saved file mode: %v %v, want 0600", fi.Mode(), err)
				}
				if filepath.Dir(rec.SavedTo) != filepath.Dir(path) || !strings.HasPrefix(filepath.Base(rec.SavedTo), "audit.log.torn-") {
					t.Errorf("saved to %s, want audit.log.torn-… beside the log", rec.SavedTo)
				}
			}
			if got, _ := os.ReadFile(path); string(got) != want {
				t.Errorf("after Open the file holds\n%q\nwant\n%q", got, want)
			}
			// The chain continues after the last complete record.
			if _, err := l.Write(context.Background(), sample(7)); err != nil {
				t.Fatal(err)
			}
			if n, _, err := l.Head(); err != nil || n != int64(strings.Count(want, "\n")+1) {
				t.Errorf("Head = %d, %v; want %d", n, err, strings.Count(want, "\n")+1)
			}
			l.Close()
			f, _ = os.Open(path)
			defer f.Close()
			s, err := Verify(f)
			if err != nil || s.Records != strings.Count(want, "\n")+1 {
				t.Errorf("Verify after repair and a write = %d records, %v", s.Records, err)
			}
		})
	}
}

func TestARefusedOpenLeavesNoTrace(t *testing.T) {
	path := writeLog(t, 2)
	lines := readLines(t, path)
	lines[1] = strings.Replace(lines[1], `"decision":"deny"`, `"decision":"allow"`, 1)
	content := strings.Join(lines, "") + `{"time":"20`
	os.WriteFile(path, []byte(content), 0o600)
	if l, err := Open(path); err == nil {
		l.Close()
		t.Fatal("Open of an edited log with a torn tail succeeded")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("a refused Open left files behind: %v", entries)
	}
	if got, _ := os.ReadFile(path); string(got) != content {
		t.Error("a refused Open changed the file")
	}
}

func TestHeadCountsTheRecordsOfAReopenedFile(t *testing.T) {
	path := writeLog(t, 5)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		l.Write(context.Background(), sample(5+i))
	}
	n, hash, err := l.Head()
	if err != nil || n != 8 || hash != l.LastHash() {
		t.Errorf("Head = %d, %s, %v; want 8 and the last hash", n, hash, err)
	}
	var buf bytes.Buffer
	mem := New(&buf, Genesis)
	mem.Write(context.Background(), sample(0))
	if n, h, _ := mem.Head(); n != 1 || h != mem.LastHash() {
		t.Errorf("Head of a New log = %d, %s", n, h)
	}
}
