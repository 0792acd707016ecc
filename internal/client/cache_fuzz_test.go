package client

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// unescapePOSIX splits a line of backslash-escaped words the way sh and
// Python's shlex do for input with no quotes.
func unescapePOSIX(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{"/usr/bin/ferry", "/opt/run ner/#1;x", `a"b'c$d` + "`e`\\f", "--url=https://f.example/x?y", "é ✓"} {
		f.Add(s, "exchange")
	}
	f.Add("ferry", "ends in a no-break space\u00a0")
	f.Fuzz(func(t *testing.T, a, b string) {
		line, err := CommandLine([]string{a, b})
		if err != nil {
			control := strings.ContainsFunc(a+b, func(r rune) bool { return r < 0x20 || r == 0x7f })
			if a != "" && b != "" && !control && strings.TrimRightFunc(b, unicode.IsSpace) == b {
				t.Fatalf("CommandLine(%q, %q) refused: %v", a, b, err)
			}
			return
		}
		if strings.TrimSpace(line) != line {
			t.Fatalf("%q would be trimmed by the ini readers", line)
		}
		// What the Go SDK's ini reader would cut or unquote.
		if strings.Contains(line, " #") || strings.Contains(line, " ;") || strings.Contains(line, "\t") ||
			(len(line) > 1 && (line[0] == '"' || line[0] == '\'') && line[len(line)-1] == line[0]) {
			t.Fatalf("%q would be changed by aws-sdk-go-v2's ini reader", line)
		}
		if got := unescapePOSIX(line); len(got) != 2 || got[0] != a || got[1] != b {
			t.Fatalf("%q splits into %q, want [%q %q]", line, got, a, b)
		}
	})
}

func FuzzReadCache(f *testing.F) {
	e, _ := NextEntry(nil, awsFor("r1", 3600e9), "tok", t0)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte("{"))
	if data, err := jsonOf(e); err == nil {
		f.Add(data)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := ReadCache(path)
		if err != nil {
			t.Fatalf("a readable file is an error: %v", err)
		}
		// Whatever it accepts is usable: the margin and freshness are
		// defined, and a credential is complete.
		if e != nil {
			if e.Credential.AccessKeyID == "" || e.Credential.SecretAccessKey == "" || e.Credential.SessionToken == "" {
				t.Fatal("accepted an incomplete credential")
			}
			_ = e.Fresh(e.Policy, t0)
			if e.RefreshMargin() < 0 || e.RefreshMargin() > MaxRefreshMargin {
				t.Fatalf("margin %s", e.RefreshMargin())
			}
		}
	})
}

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }
