package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

func TestAuditVerifyReportsATornFinalRecord(t *testing.T) {
	path := writeAuditLog(t, recentDecisions())
	b, _ := os.ReadFile(path)
	torn := filepath.Join(t.TempDir(), "torn.log")
	os.WriteFile(torn, b[:len(b)-40], 0o600) // the 4th record cut short
	code, out, errOut := runAuditArgs("verify", torn)
	if code != exitFail {
		t.Errorf("verify of a torn log exited %d, want 1", code)
	}
	want := torn + ":4: incomplete final record (no trailing newline)"
	if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, torn+": the 3 complete records before it chain intact") {
		t.Errorf("stderr = %q, want it to start %q and say the 3 records before it are intact", errOut, want)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
	// An edit is not reported as a torn write.
	edited := filepath.Join(t.TempDir(), "edited.log")
	os.WriteFile(edited, bytes.Replace(b, []byte(`"deny"`), []byte(`"allow"`), 1), 0o600)
	if _, _, errOut := runAuditArgs("verify", edited); strings.Contains(errOut, "incomplete") {
		t.Errorf("an edited log was reported as torn: %q", errOut)
	}
}

// checkpointedAuditLog writes records with a checkpoint after the 2nd and
// the 4th to a broker-style JSON log, signed as the broker signs them, and
// returns the audit file, the log and the JWKS the broker would publish.
func checkpointedAuditLog(t *testing.T) (file, log string, jwks []byte) {
	t.Helper()
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokensign.NewSigner("https://ferry.example.com", key)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := audit.JWSSigner(key.Signer, key.ID, string(key.Alg))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file, log = filepath.Join(dir, "audit.log"), filepath.Join(dir, "ferry.log")
	l, err := audit.Open(file, audit.NoSync())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("ferry serving", "addr", "127.0.0.1:8080")
	c := audit.NewCheckpointer(l, logger, audit.CheckpointOptions{Sign: sign})
	for i, r := range append(recentDecisions(), recentDecisions()[0]) {
		if _, err := l.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if i == 1 || i == 3 {
			c.Checkpoint(context.Background())
		}
	}
	l.Close()
	os.WriteFile(log, logs.Bytes(), 0o600)
	return file, log, signer.JWKSJSON()
}

func TestAuditVerifyChecksCheckpoints(t *testing.T) {
	file, log, jwks := checkpointedAuditLog(t)
	dir := t.TempDir()
	jwksFile := filepath.Join(dir, "jwks.json")
	os.WriteFile(jwksFile, jwks, 0o600)
	_, _, otherJWKS := checkpointedAuditLog(t)
	otherFile := filepath.Join(dir, "other-jwks.json")
	os.WriteFile(otherFile, otherJWKS, 0o600)
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(jwks) }))
	t.Cleanup(jwksSrv.Close)

	b, _ := os.ReadFile(file)
	lines := strings.SplitAfter(string(b), "\n")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	cut := write("cut.log", strings.Join(lines[:3], ""))
	logText, _ := os.ReadFile(log)
	tamperedLog := write("tampered-ferry.log", strings.Replace(string(logText), `"count":4`, `"count":3`, 1))
	noCheckpoints := write("quiet.log", `{"msg":"ferry serving"}`+"\n")

	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  []string
		stderr  []string
		noInOut bool
	}{
		{"an intact file passes, signatures unchecked", []string{"verify", file, "--checkpoints", log}, exitOK,
			[]string{file + ": 5 records, chain intact", "2 checkpoints hold, the furthest at 4 records", log + ":3", "signatures not checked (pass --jwks"}, nil, false},
		{"an intact file passes with the JWKS from a file", []string{"verify", file, "--checkpoints", log, "--jwks", jwksFile}, exitOK,
			[]string{"2 checkpoints hold", "every checkpoint's signature verified"}, nil, false},
		{"an intact file passes with the JWKS from the broker's URL", []string{"verify", "--checkpoints", log, "--jwks", jwksSrv.URL + "/.well-known/jwks.json", file}, exitOK,
			[]string{"every checkpoint's signature verified"}, nil, false},
		{"records cut off the end fail, naming the checkpoint", []string{"verify", cut, "--checkpoints", log}, exitFail,
			nil, []string{cut + ": " + log + ":3: checkpoint at", "(4 records, last", "the file holds only 3 complete records: records were cut off the end"}, true},
		{"a checkpoint signed by another key fails", []string{"verify", file, "--checkpoints", log, "--jwks", otherFile}, exitFail,
			nil, []string{log + ":2:", "bad signature", "which the JWKS does not hold"}, true},
		{"a checkpoint altered in the log fails its signature", []string{"verify", file, "--checkpoints", tamperedLog, "--jwks", jwksFile}, exitFail,
			nil, []string{tamperedLog + ":3:", "bad signature: signature does not verify"}, true},
		{"a log without checkpoints fails: nothing to check against", []string{"verify", file, "--checkpoints", noCheckpoints}, exitFail,
			nil, []string{"holds no audit checkpoint"}, true},
		{"a missing log fails", []string{"verify", file, "--checkpoints", filepath.Join(dir, "missing.log")}, exitFail,
			nil, []string{"no such file"}, true},
		{"a JWKS that is not one fails", []string{"verify", file, "--checkpoints", log, "--jwks", log}, exitFail,
			nil, []string{"--jwks", "not a JWKS"}, true},
		{"a JWKS over plain http to another host is refused", []string{"verify", file, "--checkpoints", log, "--jwks", "http://ferry.example.com/.well-known/jwks.json"}, exitFail,
			nil, []string{"want an https URL"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runAuditArgs(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, out, errOut)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tt.noInOut && out != "" {
				t.Errorf("a failed verify printed to stdout: %q", out)
			}
		})
	}
}
