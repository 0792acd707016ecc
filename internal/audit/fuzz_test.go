package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// chainOracle re-derives, with code of its own, whether data is a hash chain
// from prev: every line ends in '\n', is a JSON object whose "prev" is the
// hash before it, and ends in `,"hash":"H"}` where H is the lowercase hex
// SHA-256 of prev and the line with H blanked. It returns each record's
// hash. Verify may refuse more (it also checks the record's shape); it must
// never pass what this refuses.
func chainOracle(data []byte, prev string) (hashes []string, ok bool) {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return nil, false
	}
	for line := range bytes.Lines(data) {
		line = line[:len(line)-1]
		var obj map[string]json.RawMessage
		if json.Unmarshal(line, &obj) != nil {
			return nil, false
		}
		var p string
		if json.Unmarshal(obj["prev"], &p) != nil || p != prev {
			return nil, false
		}
		const tailLen = len(`,"hash":"`) + 64 + len(`"}`)
		if len(line) < tailLen || string(line[len(line)-tailLen:len(line)-tailLen+9]) != `,"hash":"` {
			return nil, false
		}
		h := string(line[len(line)-66 : len(line)-2])
		if strings.ToLower(h) != h || string(line[len(line)-2:]) != `"}` {
			return nil, false
		}
		sum := sha256.Sum256([]byte(prev + string(line[:len(line)-66]) + `"}`))
		if hex.EncodeToString(sum[:]) != h {
			return nil, false
		}
		hashes = append(hashes, h)
		prev = h
	}
	return hashes, true
}

func TestChainOracleAgreesWithWrittenLogs(t *testing.T) {
	// The oracle must accept what Write produces, or the fuzz targets
	// below would check nothing.
	path := writeLog(t, 5)
	data := []byte(strings.Join(readLines(t, path), ""))
	if hashes, ok := chainOracle(data, Genesis); !ok || len(hashes) != 5 {
		t.Fatalf("oracle = %d hashes, %v; want 5, true", len(hashes), ok)
	}
	if _, ok := chainOracle(bytes.Replace(data, []byte(`"deny"`), []byte(`"allow"`), 1), Genesis); ok {
		t.Error("oracle accepted an edited record")
	}
}

// fuzzSeeds is a signed, checkpointed log and its broker log, for both
// fuzz targets.
func fuzzSeeds(f *testing.F) (audit, brokerLog []byte, key testKey) {
	var file bytes.Buffer
	l := New(&file, Genesis)
	var logs bytes.Buffer
	key = newTestKey(f, "kid-1")
	c := NewCheckpointer(l, slog.New(slog.NewJSONHandler(&logs, nil)), CheckpointOptions{Sign: key.sign, Now: func() time.Time { return t0 }})
	for i := range 4 {
		l.Write(context.Background(), sample(i))
		if i%2 == 1 {
			c.Checkpoint(context.Background())
		}
	}
	return file.Bytes(), logs.Bytes(), key
}

// FuzzVerifyCheckpoints feeds arbitrary bytes as the audit file and as the
// broker's log to what `ferry audit verify FILE --checkpoints LOG` runs:
// it must never panic, never pass a file that does not chain, and never
// pass a file that a checkpoint it read does not bear out.
func FuzzVerifyCheckpoints(f *testing.F) {
	file, logs, key := fuzzSeeds(f)
	lines := bytes.SplitAfter(file, []byte("\n"))
	f.Add(file, logs)
	f.Add(bytes.Join(lines[:2], nil), logs) // cut after the first checkpoint
	f.Add(file, []byte(strings.Replace(string(logs), `"count":4`, `"count":5`, 1)))
	f.Add(file, []byte(`{"msg":"audit checkpoint","count":0,"hash":"`+Genesis+`","time":"2026-11-23T10:00:00Z"}`+"\n"))
	f.Add(file[:len(file)-9], logs)
	f.Add([]byte{}, []byte("not json\n{\"msg\":\"audit checkpoint\"}\n"))
	f.Add(file, []byte(`{"msg":"audit checkpoint","count":1e2,"hash":"x","time":"","signature":null}`))
	f.Fuzz(func(t *testing.T, file, logData []byte) {
		cps, err := ReadCheckpoints(bytes.NewReader(logData), "LOG")
		if err != nil {
			return
		}
		for _, keys := range []bool{false, true} {
			var s Summary
			var failures []CheckpointFailure
			if keys {
				s, failures, err = VerifyCheckpoints(bytes.NewReader(file), Genesis, cps, key.jwks)
			} else {
				s, failures, err = VerifyCheckpoints(bytes.NewReader(file), Genesis, cps, nil)
			}
			if err != nil || len(failures) > 0 {
				continue
			}
			hashes, ok := chainOracle(file, Genesis)
			if !ok {
				t.Fatalf("passed a file that does not chain:\n%q", file)
			}
			if s.Records != len(hashes) {
				t.Fatalf("summary says %d records, the file holds %d", s.Records, len(hashes))
			}
			for _, cp := range cps {
				want := Genesis
				if cp.Count > 0 {
					if cp.Count > int64(len(hashes)) {
						t.Fatalf("passed a file of %d records against a checkpoint of %d", len(hashes), cp.Count)
					}
					want = hashes[cp.Count-1]
				}
				if cp.Hash != want {
					t.Fatalf("passed a file whose record %d is %s against a checkpoint saying %s", cp.Count, want, cp.Hash)
				}
				if keys && cp.VerifySignature(key.jwks) != nil {
					t.Fatalf("passed an unsigned or badly signed checkpoint %+v", cp)
				}
			}
		}
	})
}
