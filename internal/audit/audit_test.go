package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ferry-broker/ferry/internal/claims"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// sample returns the i-th record of a plausible log: allows and denies in
// turn, with every identifying field set.
func sample(i int) Record {
	r := Record{
		Time:      t0.Add(time.Duration(i) * time.Minute),
		RequestID: fmt.Sprintf("01JREQ%04d", i),
		Decision:  Allow,
		Policy:    "deploy-prod",
		Issuer:    "https://token.actions.githubusercontent.com",
		Subject:   "repo:acme/app:environment:production",
		Claims: []claims.Pair{
			{Name: "repository", Value: "acme/app"},
			{Name: "repository_id", Value: "892345671"},
			{Name: "ref", Value: "refs/heads/main"},
			{Name: "environment", Value: "production"},
			{Name: "event_name", Value: "push"},
			{Name: "run_id", Value: fmt.Sprint(9000 + i)},
			{Name: "actor", Value: "octocat"},
			{Name: "job_workflow_ref", Value: "acme/app/.github/workflows/deploy.yml@refs/heads/main"},
		},
		ClientIP:   "192.0.2.10",
		Credential: &Credential{Type: "aws", ID: "ASIAEXAMPLE", ExpiresAt: t0.Add(time.Duration(i)*time.Minute + 15*time.Minute)},
	}
	if i%2 == 1 {
		r.Decision, r.Error, r.Reason, r.Rule, r.Credential = Deny, "access_denied", `claim ref is "refs/heads/dev", policy wants "refs/heads/main"`, "match.ref", nil
	}
	return r
}

// writeLog writes n sample records to a new log file and returns its path.
func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, NoSync())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Write(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")[:bytes.Count(b, []byte("\n"))]
}

func verifyString(s string) (Summary, error) { return Verify(strings.NewReader(s)) }

func TestGenesisIsAHash(t *testing.T) {
	if !isHash(Genesis) {
		t.Fatalf("Genesis %q is not 64 lowercase hex characters", Genesis)
	}
}

func TestWrittenLogVerifies(t *testing.T) {
	path := writeLog(t, 6)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Verify(f)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Summary{Records: 6, First: t0, Last: t0.Add(5 * time.Minute), Allows: 3, Denies: 3}
	want.LastHash = s.LastHash
	if !reflect.DeepEqual(s, want) {
		t.Errorf("summary = %+v, want %+v", s, want)
	}
	if !isHash(s.LastHash) || s.LastHash == Genesis {
		t.Errorf("LastHash = %q, want the last record's hash", s.LastHash)
	}
}

func TestWriteFillsTheChainFields(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Genesis)
	r := sample(1)
	r.Time = time.Time{}
	before := time.Now()
	first, err := l.Write(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if first.Time.Location() != time.UTC || first.Time.Before(before.Add(-time.Second)) {
		t.Errorf("Time = %v, want about now in UTC", first.Time)
	}
	if first.Prev != Genesis {
		t.Errorf("first record's Prev = %q, want Genesis", first.Prev)
	}
	second, err := l.Write(context.Background(), sample(2))
	if err != nil {
		t.Fatal(err)
	}
	if second.Prev != first.Hash || l.LastHash() != second.Hash {
		t.Errorf("second.Prev = %q, want first.Hash %q; LastHash = %q, want %q", second.Prev, first.Hash, l.LastHash(), second.Hash)
	}
	// The returned record is exactly what is in the file.
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	var got Record
	if err := json.Unmarshal([]byte(lines[1]), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, second) {
		t.Errorf("line 2 decodes to %+v, Write returned %+v", got, second)
	}
	if _, err := Verify(&buf); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestWriteRefusesAnUnknownDecision(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Genesis)
	for _, d := range []string{"", "ALLOW", "maybe"} {
		r := sample(0)
		r.Decision = d
		if _, err := l.Write(context.Background(), r); err == nil {
			t.Errorf("Write with decision %q succeeded, want an error", d)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("refused records wrote %q", buf.String())
	}
}

func TestReopenResumesTheChain(t *testing.T) {
	path := writeLog(t, 3)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	var last Record
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil {
		t.Fatal(err)
	}
	r, err := l.Write(context.Background(), sample(3))
	if err != nil {
		t.Fatal(err)
	}
	if r.Prev != last.Hash {
		t.Errorf("first record after reopening has Prev %q, want the file's last hash %q", r.Prev, last.Hash)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	s, err := Verify(f)
	if err != nil || s.Records != 4 {
		t.Errorf("Verify = %d records, %v; want 4, nil", s.Records, err)
	}
}

func TestReopenReadsALastLineLongerThanOneChunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, NoSync())
	if err != nil {
		t.Fatal(err)
	}
	big := sample(1)
	big.Reason = strings.Repeat("claim value too long ", 10000) // ~200 KiB
	l.Write(context.Background(), sample(0))
	w, err := l.Write(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.LastHash() != w.Hash {
		t.Errorf("reopened LastHash = %q, want %q", l.LastHash(), w.Hash)
	}
}

func TestOpenCreatesAPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %v, want 0600", perm)
	}
	if l.LastHash() != Genesis {
		t.Errorf("new log starts at %q, want Genesis", l.LastHash())
	}
}

func TestOpenRefusesALogItCouldNotContinue(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(lines []string) string
		want   string
	}{
		{"a last line that was edited", func(l []string) string {
			l[len(l)-1] = strings.Replace(l[len(l)-1], `"decision":"deny"`, `"decision":"allow"`, 1)
			return strings.Join(l, "")
		}, "hash mismatch"},
		{"a last line that is not JSON", func(l []string) string { return strings.Join(l, "") + "garbage\n" }, "not valid JSON"},
		{"a torn tail after an edited last line", func(l []string) string {
			l[len(l)-1] = strings.Replace(l[len(l)-1], `"decision":"deny"`, `"decision":"allow"`, 1)
			return strings.Join(l, "") + `{"time":"2026-`
		}, "hash mismatch"},
		{"an unterminated tail that does not start like a record", func(l []string) string { return strings.Join(l, "") + "garbage" }, "do not start like a record"},
		{"a file that is not an audit log at all", func([]string) string { return "#!/bin/sh\necho hello" }, "not valid JSON"},
		{"an unterminated tail longer than any record", func(l []string) string {
			return strings.Join(l, "") + "{" + strings.Repeat("x", MaxLineBytes)
		}, "more than any record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 4)
			content := tt.mangle(readLines(t, path))
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := Open(path)
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open error = %q, want it to mention %q", err, tt.want)
			}
			after, _ := os.ReadFile(path)
			if string(after) != content {
				t.Error("a refused Open changed the file")
			}
		})
	}
}

func TestOpenRefusesASecondWriter(t *testing.T) {
	path := writeLog(t, 1)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if l2, err := Open(path); err == nil {
		l2.Close()
		t.Fatal("second Open of a log in use succeeded, want an error")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open error = %q, want it to say the log is in use", err)
	}
	l.Close()
	l3, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l3.Close()
}

func TestWriteAfterCloseFails(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(context.Background(), sample(0)); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestVerifyNamesTheFirstBrokenLine(t *testing.T) {
	reseal := func(line string) string {
		// Recompute a line's own hash, as a forger would.
		line = strings.TrimSuffix(line, "\n")
		var f lineFields
		json.Unmarshal([]byte(line), &f)
		blanked := line[:len(line)-hashSuffix+len(hashKey)] + blankHash
		return blanked[:len(blanked)-len(blankHash)] + `"` + chainHash(*f.Prev, []byte(blanked)) + `"}` + "\n"
	}
	tests := []struct {
		name     string
		mangle   func(l []string) []string
		wantLine int
		want     string
	}{
		{"changing a decision from deny to allow is caught on that line", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"decision":"deny"`, `"decision":"allow"`, 1)
			return l
		}, 4, "line 4: hash mismatch (record edited)"},
		{"changing a time is caught on that line", func(l []string) []string {
			l[2] = strings.Replace(l[2], "10:02:00", "09:02:00", 1)
			return l
		}, 3, "hash mismatch"},
		{"adding a key the record type does not know is caught", func(l []string) []string {
			l[2] = strings.Replace(l[2], "{", `{"approved_by":"mallory",`, 1)
			return l
		}, 3, "hash mismatch"},
		{"removing a key is caught", func(l []string) []string {
			l[1] = strings.Replace(l[1], `"client_ip":"192.0.2.10",`, "", 1)
			return l
		}, 2, "hash mismatch"},
		{"a duplicated key is caught", func(l []string) []string {
			l[1] = strings.Replace(l[1], `{`, `{"decision":"allow",`, 1)
			return l
		}, 2, "hash mismatch"},
		{"changing only whitespace is caught", func(l []string) []string {
			l[4] = strings.Replace(l[4], `,"policy"`, `, "policy"`, 1)
			return l
		}, 5, "hash mismatch"},
		{"deleting a line is caught on the line after it", func(l []string) []string {
			return append(l[:2], l[3:]...)
		}, 3, "line 3: prev does not match line 2's hash (line removed or reordered)"},
		{"deleting the first line is caught on the new first line", func(l []string) []string {
			return l[1:]
		}, 1, "prev is not the start of the chain"},
		{"swapping two lines is caught", func(l []string) []string {
			l[1], l[2] = l[2], l[1]
			return l
		}, 2, "prev does not match line 1's hash"},
		{"an edited line whose own hash was recomputed breaks the next link", func(l []string) []string {
			l[2] = reseal(strings.Replace(l[2], `"policy":"deploy-prod"`, `"policy":"deploy-dev"`, 1))
			return l
		}, 4, "prev does not match line 3's hash"},
		{"a last line cut short is caught", func(l []string) []string {
			l[5] = l[5][:len(l[5])/2]
			return l
		}, 6, "incomplete final record"},
		{"a last line without its newline is caught", func(l []string) []string {
			l[5] = strings.TrimSuffix(l[5], "\n")
			return l
		}, 6, "incomplete final record"},
		{"a line cut short in the middle is caught", func(l []string) []string {
			l[2] = l[2][:40] + "\n"
			return l
		}, 3, "not valid JSON"},
		{"an empty line is caught", func(l []string) []string {
			return append(l[:3], append([]string{"\n"}, l[3:]...)...)
		}, 4, "empty line"},
		{"a hash that is not the last member is caught", func(l []string) []string {
			s := strings.TrimSuffix(l[1], "}\n")
			l[1] = s + `,"note":"x"}` + "\n"
			return l
		}, 2, `"hash" is not the last member`},
		{"an uppercase hash is caught", func(l []string) []string {
			i := strings.LastIndex(l[1], `"hash":"`) + len(`"hash":"`)
			l[1] = l[1][:i] + strings.ToUpper(l[1][i:])
			return l
		}, 2, "hash"},
		{"a record that is not an object is caught", func(l []string) []string {
			l[0] = `["prev","hash"]` + "\n"
			return l
		}, 1, "not a valid record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := readLines(t, writeLog(t, 6))
			_, err := verifyString(strings.Join(tt.mangle(lines), ""))
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("Verify error = %v, want a *ChainError", err)
			}
			if ce.Line != tt.wantLine || !strings.Contains(ce.Error(), tt.want) {
				t.Errorf("Verify error = %q (line %d), want line %d mentioning %q", ce, ce.Line, tt.wantLine, tt.want)
			}
		})
	}
}

func TestVerifyAcceptsAnEmptyLog(t *testing.T) {
	s, err := verifyString("")
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 0 || !s.First.IsZero() || s.LastHash != Genesis {
		t.Errorf("summary of an empty log = %+v, want no records and LastHash Genesis", s)
	}
}

func TestVerifyFromChecksTheGivenStart(t *testing.T) {
	var buf bytes.Buffer
	start := strings.Repeat("ab", 32)
	l := New(&buf, start)
	l.Write(context.Background(), sample(0))
	if _, err := VerifyFrom(bytes.NewReader(buf.Bytes()), start); err != nil {
		t.Errorf("VerifyFrom with the right start: %v", err)
	}
	if _, err := Verify(bytes.NewReader(buf.Bytes())); err == nil {
		t.Error("Verify of a chain not starting at Genesis succeeded")
	}
}

func TestVerifyRejectsOverlongLines(t *testing.T) {
	s := strings.Repeat("x", MaxLineBytes+10) + "\n"
	_, err := verifyString(s)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 1 || !strings.Contains(ce.Reason, "longer than") {
		t.Errorf("Verify = %v, want line 1 too long", err)
	}
}

func TestWriteRefusesARecordTooLongToVerify(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Genesis)
	r := sample(1)
	r.Reason = strings.Repeat("y", MaxLineBytes)
	if _, err := l.Write(context.Background(), r); err == nil {
		t.Error("Write of an overlong record succeeded")
	}
	if _, err := l.Write(context.Background(), sample(2)); err != nil {
		t.Errorf("Write after a refused record: %v", err)
	}
	if _, err := Verify(&buf); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestConcurrentWritesStillVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, NoSync())
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Write(context.Background(), sample(w*each+i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l.Close()
	f, _ := os.Open(path)
	defer f.Close()
	s, err := Verify(f)
	if err != nil {
		t.Fatalf("Verify after concurrent writes: %v", err)
	}
	if s.Records != writers*each {
		t.Errorf("Records = %d, want %d", s.Records, writers*each)
	}
}

// failingWriter accepts ok writes, then writes half of the next one and fails.
type failingWriter struct {
	buf  bytes.Buffer
	ok   int
	part bool
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.ok > 0 {
		w.ok--
		return w.buf.Write(p)
	}
	if w.part {
		n, _ := w.buf.Write(p[:len(p)/2])
		return n, errors.New("disk full")
	}
	return 0, errors.New("disk full")
}

func TestAFailedWriteNeverLeavesAForkedChain(t *testing.T) {
	t.Run("a write that wrote nothing leaves the chain where it was", func(t *testing.T) {
		w := &failingWriter{ok: 1}
		l := New(w, Genesis)
		l.Write(context.Background(), sample(0))
		head := l.LastHash()
		if _, err := l.Write(context.Background(), sample(1)); err == nil {
			t.Fatal("failed write returned no error")
		}
		if l.LastHash() != head {
			t.Error("a failed write advanced the chain")
		}
		w.ok = 1
		if _, err := l.Write(context.Background(), sample(2)); err != nil {
			t.Fatalf("write after a clean failure: %v", err)
		}
		if _, err := Verify(&w.buf); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})
	t.Run("a torn write to a plain writer stops the log", func(t *testing.T) {
		w := &failingWriter{ok: 1, part: true}
		l := New(w, Genesis)
		l.Write(context.Background(), sample(0))
		l.Write(context.Background(), sample(1))
		w.ok = 1
		if _, err := l.Write(context.Background(), sample(2)); err == nil {
			t.Error("write after a torn write succeeded, want the log to refuse")
		}
	})
}

func TestRecordsNeverHoldSecrets(t *testing.T) {
	forbidden := map[string]bool{"token": true, "secret_access_key": true, "session_token": true, "access_token": true,
		"secret": true, "password": true, "id_token": true, "subject_token": true}

	// No field of the record type, at any depth, is named like a secret.
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() {
			return
		}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if forbidden[name] {
				t.Errorf("%s.%s is serialised as %q", typ.Name(), f.Name, name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[Record]())

	// And no written line has such a key, or a token smuggled into a reason.
	const jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJyZXBvOmFjbWUvYXBwIn0.c2lnbmF0dXJlLWJ5dGVz"
	var buf bytes.Buffer
	l := New(&buf, Genesis)
	for i := range 4 {
		r := sample(i)
		r.Reason = "upstream said: bad token " + jwt + " (retry)"
		r.Error = "invalid_token " + jwt
		if i == 2 {
			r.Credential = &Credential{Type: "token", ID: "01JTOKENID", ExpiresAt: t0}
		}
		if _, err := l.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	if strings.Contains(out, "eyJ") {
		t.Errorf("a JWT reached the log:\n%s", out)
	}
	if !strings.Contains(out, "[redacted token]") {
		t.Errorf("the JWT was not replaced by a marker:\n%s", out)
	}
	var keys func(v any)
	keys = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if forbidden[k] {
					t.Errorf("a written line has the key %q", k)
				}
				keys(x)
			}
		case []any:
			for _, x := range v {
				keys(x)
			}
		}
	}
	for line := range strings.Lines(out) {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		keys(v)
	}
	if _, err := Verify(strings.NewReader(out)); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	var buf bytes.Buffer
	l := New(&buf, Genesis)
	for i := range 3 {
		l.Write(context.Background(), sample(i))
	}
	valid := buf.String()
	f.Add([]byte(valid))
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"prev":"` + Genesis + `","hash":"` + Genesis + `"}` + "\n"))
	f.Add([]byte(valid[:len(valid)-7]))
	f.Add([]byte(strings.Replace(valid, "deny", "allow", 1)))
	f.Add([]byte(`{"time":"x","prev":null,"hash":""}` + "\n"))
	f.Add([]byte(`,"hash":"` + Genesis + `"}` + "\n"))
	f.Add([]byte(valid + valid))                           // a chain that restarts
	f.Add([]byte(strings.Replace(valid, "\n", "\r\n", 1))) // a line ending another system wrote
	f.Add([]byte(strings.Replace(valid, `"hash":"`, `"hash" :"`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Verify(bytes.NewReader(data))
		if err == nil {
			if want := bytes.Count(data, []byte("\n")); s.Records != want {
				t.Errorf("intact log of %d lines reported %d records", want, s.Records)
			}
			if hashes, ok := chainOracle(data, Genesis); !ok || len(hashes) != s.Records || (s.Records > 0 && hashes[s.Records-1] != s.LastHash) {
				t.Fatalf("Verify passed a log that does not chain:\n%q", data)
			}
			if s.Allows+s.Denies > s.Records {
				t.Errorf("summary %+v counts more decisions than records", s)
			}
		} else if _, ok := errors.AsType[*ChainError](err); !ok {
			t.Errorf("Verify of in-memory bytes returned %v, want a *ChainError", err)
		}
		if _, err := Report(bytes.NewReader(data), ReportOptions{Policies: []string{"deploy-prod"}}); err != nil {
			t.Errorf("Report of in-memory bytes: %v", err)
		}
	})
}
