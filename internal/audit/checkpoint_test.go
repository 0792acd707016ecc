package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type testKey struct {
	sign SignFunc
	jwks *jose.JSONWebKeySet
	priv *ecdsa.PrivateKey
}

func newTestKey(t testing.TB, kid string) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := JWSSigner(priv, kid, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	return testKey{sign: sign, priv: priv, jwks: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: priv.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}}}}
}

// lockedBuffer is a log destination read while a Checkpointer writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// checkpointedLog writes 6 records to a file, with a checkpoint logged
// after the 3rd and the 5th, and returns the file, the broker-style log and
// the key that signed the checkpoints.
func checkpointedLog(t *testing.T) (path string, brokerLog string, key testKey) {
	t.Helper()
	key = newTestKey(t, "kid-1")
	path = filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, NoSync())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("ferry serving", "addr", "127.0.0.1:8080")
	c := NewCheckpointer(l, logger, CheckpointOptions{Sign: key.sign})
	for i := range 6 {
		if _, err := l.Write(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
		if i == 2 || i == 4 {
			if _, err := c.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			logger.Info("exchange refused", "request_id", "x", "reason", `msg "audit checkpoint" in a reason`)
		}
	}
	l.Close()
	return path, logs.String(), key
}

func readCPs(t *testing.T, log string) []Checkpoint {
	t.Helper()
	cps, err := ReadCheckpoints(strings.NewReader(log), "ferry.log")
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

func TestCheckpointsCatchWhatTheChainAloneCannot(t *testing.T) {
	path, brokerLog, key := checkpointedLog(t)
	lines := readLines(t, path)
	cps := readCPs(t, brokerLog)
	if len(cps) != 2 || cps[0].Count != 3 || cps[1].Count != 5 || cps[0].Source != "ferry.log:2" || cps[1].Source != "ferry.log:4" {
		t.Fatalf("checkpoints = %+v, want counts 3 and 5 from lines 2 and 4", cps)
	}
	var hash3 Record
	json.Unmarshal([]byte(lines[2]), &hash3)
	if cps[0].Hash != hash3.Hash || cps[0].Signature == "" || cps[0].Time.IsZero() {
		t.Errorf("first checkpoint %+v, want the 3rd record's hash %s, signed and timed", cps[0], hash3.Hash)
	}

	resealed := func(edit func(i int, r *Record)) string { // a forger who recomputes every hash
		var buf bytes.Buffer
		l := New(&buf, Genesis)
		for i := range 6 {
			r := sample(i)
			edit(i, &r)
			l.Write(context.Background(), r)
		}
		return buf.String()
	}
	other := newTestKey(t, "kid-1") // same kid, another key
	tests := []struct {
		name      string
		file      string
		log       string
		keys      *jose.JSONWebKeySet
		wantChain string     // "" when the chain must verify
		wantFail  [][]string // per failing checkpoint, in log order: what its message says
	}{
		{name: "an intact file passes", file: strings.Join(lines, ""), log: brokerLog, keys: key.jwks},
		{name: "an intact file passes without checking signatures", file: strings.Join(lines, ""), log: brokerLog},
		{name: "cutting the record after the last checkpoint is not seen: the gap a checkpoint a minute leaves",
			file: strings.Join(lines[:5], ""), log: brokerLog, keys: key.jwks},
		{name: "cutting records off the end is caught by the checkpoint that counted them",
			file: strings.Join(lines[:4], ""), log: brokerLog, keys: key.jwks,
			wantFail: [][]string{{"ferry.log:4: checkpoint at", "5 records", "only 4 complete records: records were cut off the end"}}},
		{name: "cutting past both checkpoints fails both", file: strings.Join(lines[:2], ""), log: brokerLog,
			wantFail: [][]string{{"ferry.log:2:", "cut off"}, {"ferry.log:4:", "cut off"}}},
		{name: "an empty file fails every checkpoint", file: "", log: brokerLog,
			wantFail: [][]string{{"only 0 complete records"}, {"only 0 complete records"}}},
		{name: "an edited record before a checkpoint, the whole chain recomputed, diverges",
			file: resealed(func(i int, r *Record) {
				if i == 1 {
					r.Decision, r.Credential = Allow, &Credential{Type: "aws", ID: "ASIAFORGED", ExpiresAt: t0}
				}
			}), log: brokerLog,
			wantFail: [][]string{{"ferry.log:2:", "record 3 has hash", "rewritten"}, {"ferry.log:4:", "record 5 has hash"}}},
		{name: "an edited record after the last checkpoint, recomputed, is only the chain's business",
			file: resealed(func(i int, r *Record) {
				if i == 5 {
					r.Reason = "edited"
				}
			}), log: brokerLog},
		{name: "an edited record that was not resealed breaks the chain and leaves later checkpoints unchecked",
			file: strings.Join(lines[:1], "") + strings.Replace(lines[1], `"deny"`, `"allow"`, 1) + strings.Join(lines[2:], ""), log: brokerLog,
			wantChain: "line 2: hash mismatch", wantFail: [][]string{{"not checked: the chain breaks at line 2"}, {"not checked"}}},
		{name: "a torn final line is incomplete, and checkpoints before it hold",
			file: strings.Join(lines[:5], "") + lines[5][:30], log: brokerLog, keys: key.jwks,
			wantChain: "line 6: incomplete final record"},
		{name: "a checkpoint whose count was altered in the log fails its signature",
			file: strings.Join(lines[:3], ""), log: strings.Replace(brokerLog, `"count":5`, `"count":3`, 1), keys: key.jwks,
			wantFail: [][]string{{"ferry.log:4:", "bad signature", "does not verify"}}},
		{name: "a checkpoint whose hash was altered fails its signature, not just the comparison",
			file: strings.Join(lines, ""), log: strings.Replace(brokerLog, cps[0].Hash, strings.Repeat("0", 64), 1), keys: key.jwks,
			wantFail: [][]string{{"ferry.log:2:", "bad signature"}}},
		{name: "a checkpoint signed by another key with the same kid fails",
			file: strings.Join(lines, ""), log: brokerLog, keys: other.jwks,
			wantFail: [][]string{{"does not verify"}, {"does not verify"}}},
		{name: "a checkpoint signed by a key the JWKS lacks fails",
			file: strings.Join(lines, ""), log: brokerLog, keys: newTestKey(t, "kid-2").jwks,
			wantFail: [][]string{{`key "kid-1", which the JWKS does not hold`}, {"does not hold"}}},
		{name: "an unsigned checkpoint fails when signatures are checked",
			file: strings.Join(lines, ""), log: stripSignatures(brokerLog), keys: key.jwks,
			wantFail: [][]string{{"bad signature: unsigned"}, {"unsigned"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, failures, err := VerifyCheckpoints(strings.NewReader(tt.file), Genesis, readCPs(t, tt.log), tt.keys)
			switch {
			case tt.wantChain == "" && err != nil:
				t.Errorf("chain error %v, want none", err)
			case tt.wantChain != "" && (err == nil || !strings.Contains(err.Error(), tt.wantChain)):
				t.Errorf("chain error %v, want %q", err, tt.wantChain)
			}
			if len(failures) != len(tt.wantFail) {
				t.Fatalf("failures = %v, want %d", failures, len(tt.wantFail))
			}
			for i, f := range failures {
				for _, want := range tt.wantFail[i] {
					if !strings.Contains(f.Error(), want) {
						t.Errorf("failure %d = %q, want it to mention %q", i, f, want)
					}
				}
			}
			if err == nil && len(failures) == 0 && s.Records < 5 {
				t.Errorf("a file of %d records passed checkpoints of 5", s.Records)
			}
		})
	}
}

func stripSignatures(log string) string {
	var out strings.Builder
	for line := range strings.Lines(log) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == CheckpointMsg {
			delete(m, "signature")
			b, _ := json.Marshal(m)
			line = string(b) + "\n"
		}
		out.WriteString(line)
	}
	return out.String()
}

func TestACheckpointSignatureIsNoTokenAndNoTokenIsACheckpoint(t *testing.T) {
	key := newTestKey(t, "kid-1")
	cp := Checkpoint{Count: 3, Hash: strings.Repeat("a", 64), Time: t0}
	sig, err := key.sign(cp.Payload())
	if err != nil {
		t.Fatal(err)
	}
	cp.Signature = sig
	if err := cp.VerifySignature(key.jwks); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	if parts := strings.Split(sig, "."); len(parts) != 3 || parts[1] != "" {
		t.Errorf("signature %q is not a detached compact JWS", sig)
	}
	// A JWT signed by the same key (as Ferry tokens are) with the same
	// payload is refused: its typ says what it is.
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key.priv, KeyID: "kid-1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	jws, _ := s.Sign(cp.Payload())
	cp.Signature, _ = jws.DetachedCompactSerialize()
	if err := cp.VerifySignature(key.jwks); err == nil || !strings.Contains(err.Error(), "typ") {
		t.Errorf("a JWT-typed signature = %v, want refused for its typ", err)
	}
	// The same signature over another time does not verify.
	cp.Signature = sig
	cp.Time = t0.Add(time.Nanosecond)
	if err := cp.VerifySignature(key.jwks); err == nil {
		t.Error("a signature verified over a different time")
	}
	// A signature whose header asks for "none" or HMAC is refused.
	cp.Time = t0
	cp.Signature = "eyJhbGciOiJub25lIiwia2lkIjoia2lkLTEiLCJ0eXAiOiJmZXJyeS1hdWRpdC1jaGVja3BvaW50In0.."
	if err := cp.VerifySignature(key.jwks); err == nil {
		t.Error(`an alg "none" signature verified`)
	}
}

func TestReadCheckpoints(t *testing.T) {
	h := strings.Repeat("ab", 32)
	good := `{"time":"2026-11-23T10:15:00.5Z","level":"INFO","msg":"audit checkpoint","count":12,"hash":"` + h + `"}`
	tests := []struct {
		name  string
		line  string
		count int64 // -1: not a checkpoint
		err   string
	}{
		{"a checkpoint", good, 12, ""},
		{"a signed checkpoint", strings.Replace(good, `}`, `,"signature":"a..b"}`, 1), 12, ""},
		{"count 0", strings.Replace(good, `"count":12`, `"count":0`, 1), 0, ""},
		{"another message", `{"msg":"exchange refused","reason":"audit checkpoint"}`, -1, ""},
		{"the message nested, not top level", `{"msg":"x","inner":{"msg":"audit checkpoint"}}`, -1, ""},
		{"a text line mentioning it", `level=INFO msg="audit checkpoint" count=3`, -1, ""},
		{"msg that is not a string", `{"msg":["audit checkpoint"]}`, -1, ""},
		{"no count", strings.Replace(good, `"count":12,`, ``, 1), 0, `"count"`},
		{"a null count", strings.Replace(good, `"count":12`, `"count":null`, 1), 0, `"count"`},
		{"a negative count", strings.Replace(good, `"count":12`, `"count":-1`, 1), 0, `"count"`},
		{"a fractional count", strings.Replace(good, `"count":12`, `"count":1.5`, 1), 0, `"count"`},
		{"a string count", strings.Replace(good, `"count":12`, `"count":"12"`, 1), 0, `"count"`},
		{"a short hash", strings.Replace(good, h, h[:60], 1), 0, `"hash"`},
		{"an uppercase hash", strings.Replace(good, h, strings.ToUpper(h), 1), 0, `"hash"`},
		{"no time", strings.Replace(good, `"time":"2026-11-23T10:15:00.5Z",`, ``, 1), 0, `"time"`},
		{"a bad time", strings.Replace(good, `2026-11-23T10:15:00.5Z`, `yesterday`, 1), 0, `"time"`},
		{"an empty signature", strings.Replace(good, `}`, `,"signature":""}`, 1), 0, `"signature"`},
		{"a null signature", strings.Replace(good, `}`, `,"signature":null}`, 1), 0, `"signature"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := "not json\n" + tt.line + "\n" + good
			cps, err := ReadCheckpoints(strings.NewReader(log), "L")
			if tt.err != "" {
				var le *CheckpointLogError
				if !errors.As(err, &le) || le.Source != "L:2" || !strings.Contains(le.Reason, tt.err) {
					t.Errorf("err = %v, want L:2 mentioning %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if tt.count >= 0 {
				want = 2
			}
			if len(cps) != want {
				t.Fatalf("%d checkpoints, want %d", len(cps), want)
			}
			if tt.count >= 0 && (cps[0].Count != tt.count || cps[0].Source != "L:2") {
				t.Errorf("checkpoint = %+v", cps[0])
			}
			if last := cps[len(cps)-1]; last.Source != "L:3" || last.Hash != h || !last.Time.Equal(time.Date(2026, 11, 23, 10, 15, 0, 5e8, time.UTC)) {
				t.Errorf("last checkpoint = %+v", last)
			}
		})
	}
	long := strings.Repeat("x", maxLogLine+10) + `"audit checkpoint"`
	if cps, err := ReadCheckpoints(strings.NewReader(long+"\n"+good+"\n"), "L"); err != nil || len(cps) != 1 || cps[0].Source != "L:2" {
		t.Errorf("after an overlong line: %v, %v", cps, err)
	}
}

func TestCheckpointerLogsWhenRecordsWereWrittenAndAtStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, NoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs lockedBuffer
	// A logger set to errors only still gets checkpoints: they are audit,
	// not diagnostics.
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
	now := t0
	c := NewCheckpointer(l, logger, CheckpointOptions{Now: func() time.Time { return now }, Interval: time.Hour})
	ctx := context.Background()
	count := func() int { return strings.Count(logs.String(), `"msg":"audit checkpoint"`) }

	c.checkpoint(ctx, false) // a first one, of the empty file
	c.checkpoint(ctx, false) // nothing new: nothing logged
	if n := count(); n != 1 {
		t.Fatalf("%d checkpoints, want 1:\n%s", n, logs.String())
	}
	l.Write(ctx, sample(0))
	l.Write(ctx, sample(1))
	now = now.Add(time.Minute)
	c.checkpoint(ctx, false)
	if n := count(); n != 2 {
		t.Fatalf("%d checkpoints after new records, want 2", n)
	}
	c.Stop() // always one at shutdown, even with nothing new
	c.Stop()
	if n := count(); n != 3 {
		t.Fatalf("%d checkpoints after Stop, want 3", n)
	}
	cps := readCPs(t, logs.String())
	if cps[0].Count != 0 || cps[0].Hash != Genesis || cps[1].Count != 2 || cps[2].Count != 2 || cps[2].Hash != l.LastHash() {
		t.Errorf("checkpoints = %+v", cps)
	}
	if !cps[1].Time.Equal(t0.Add(time.Minute)) || !strings.Contains(logs.String(), `"file":"`+path+`"`) {
		t.Errorf("checkpoint time %v, want %v, and the file named:\n%s", cps[1].Time, t0.Add(time.Minute), logs.String())
	}
	f, _ := os.Open(path)
	defer f.Close()
	if _, failures, err := VerifyCheckpoints(f, Genesis, cps, nil); err != nil || len(failures) != 0 {
		t.Errorf("the file fails its own checkpoints: %v %v", err, failures)
	}
}

func TestCheckpointerRunsOnItsSchedule(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"), NoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs lockedBuffer
	c := NewCheckpointer(l, slog.New(slog.NewJSONHandler(&logs, nil)), CheckpointOptions{Interval: 5 * time.Millisecond})
	c.Start()
	defer c.Stop()
	l.Write(context.Background(), sample(0))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `"count":1,`) {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of the record on the schedule:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
