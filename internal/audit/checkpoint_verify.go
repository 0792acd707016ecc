package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxLogLine bounds a log line ReadCheckpoints looks at; longer lines are
// not checkpoints (those are a few hundred bytes) and are skipped.
const maxLogLine = 1 << 20

// CheckpointLogError is a line of a log that claims to be a checkpoint
// ("msg": "audit checkpoint") but is not a well-formed one.
type CheckpointLogError struct {
	Source string // "LOG:LINE"
	Reason string
}

func (e *CheckpointLogError) Error() string { return e.Source + ": " + e.Reason }

// ReadCheckpoints returns the checkpoints in a broker's log: the JSON lines
// whose top-level "msg" is CheckpointMsg, in log order, each with Source
// set to name:LINE. Every other line — another message, not JSON, another
// program's output — is ignored. A checkpoint line that is malformed is an
// error (all of them, joined), never skipped: a check that silently
// dropped what it could not read would pass a log an attacker garbled.
func ReadCheckpoints(r io.Reader, name string) ([]Checkpoint, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var cps []Checkpoint
	var errs []error
	marker := []byte(`"` + CheckpointMsg + `"`)
	for n := 1; ; n++ {
		line, err := readLogLine(br)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read %s line %d: %w", name, n, err)
		}
		if line != nil && bytes.Contains(line, marker) {
			cp, ok, reason := parseCheckpointLine(line)
			source := fmt.Sprintf("%s:%d", name, n)
			switch {
			case reason != "":
				errs = append(errs, &CheckpointLogError{Source: source, Reason: reason})
			case ok:
				cp.Source = source
				cps = append(cps, cp)
			}
		}
		if err == io.EOF {
			return cps, errors.Join(errs...)
		}
	}
}

// readLogLine returns the next line without its newline, or nil for a line
// over maxLogLine (consumed and skipped).
func readLogLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = br.ReadSlice('\n')
			if len(long) <= maxLogLine {
				long = append(long, line...)
			}
		}
		if len(long) > maxLogLine {
			return nil, err
		}
		line = long
	}
	return bytes.TrimSuffix(line, []byte{'\n'}), err
}

// parseCheckpointLine reads a log line: ok when it is a checkpoint, a
// reason when it says it is one but is malformed, neither when it is some
// other line.
func parseCheckpointLine(line []byte) (cp Checkpoint, ok bool, reason string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return cp, false, "" // not a JSON log line
	}
	var msg string
	if json.Unmarshal(m["msg"], &msg) != nil || msg != CheckpointMsg {
		return cp, false, ""
	}
	if c := m["count"]; len(c) == 0 || c[0] < '0' || c[0] > '9' || json.Unmarshal(c, &cp.Count) != nil {
		return cp, false, `checkpoint without a "count" that is a whole number of records`
	}
	if err := json.Unmarshal(m["hash"], &cp.Hash); err != nil || !isHash(cp.Hash) {
		return cp, false, `checkpoint without a "hash" of 64 lowercase hex characters`
	}
	var ts string
	if err := json.Unmarshal(m["time"], &ts); err != nil {
		return cp, false, `checkpoint without a "time"`
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return cp, false, `checkpoint "time" is not an RFC 3339 time`
	}
	cp.Time = t
	if raw, present := m["signature"]; present {
		if err := json.Unmarshal(raw, &cp.Signature); err != nil || cp.Signature == "" {
			return cp, false, `checkpoint "signature" is not a non-empty string`
		}
	}
	return cp, true, ""
}

// checkpointAlgs are the signature algorithms a checkpoint may use: those
// Ferry's signing keys sign with.
func checkpointAlgs() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.EdDSA}
}

// VerifySignature checks that the checkpoint is signed, over its Payload,
// by a key in keys (found by the kid in its header).
func (c Checkpoint) VerifySignature(keys *jose.JSONWebKeySet) error {
	if c.Signature == "" {
		return errors.New("unsigned")
	}
	jws, err := jose.ParseDetached(c.Signature, c.Payload(), checkpointAlgs())
	if err != nil {
		return fmt.Errorf("signature is not a detached JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return errors.New("signature must hold exactly one signature")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != checkpointType {
		return fmt.Errorf("signature's typ is %q, not %q: not a checkpoint signature", typ, checkpointType)
	}
	if h.KeyID == "" {
		return errors.New("signature names no key (kid)")
	}
	candidates := keys.Key(h.KeyID)
	if len(candidates) == 0 {
		return fmt.Errorf("signed by key %q, which the JWKS does not hold", h.KeyID)
	}
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if jws.DetachedVerify(c.Payload(), k.Key) == nil {
			return nil
		}
	}
	return fmt.Errorf("signature does not verify with key %q (forged, or count, hash or time altered)", h.KeyID)
}

// CheckpointFailure is a checkpoint that the audit file, or its signature,
// does not bear out.
type CheckpointFailure struct {
	Checkpoint Checkpoint
	Reason     string
}

func (f CheckpointFailure) Error() string {
	return fmt.Sprintf("%s: checkpoint at %s (%d records, last %s): %s",
		f.Checkpoint.Source, f.Checkpoint.Time.UTC().Format(time.RFC3339), f.Checkpoint.Count, short(f.Checkpoint.Hash), f.Reason)
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12] + "…"
	}
	return hash
}

// VerifyCheckpoints checks the log's chain from prev, as VerifyFrom does,
// and in the same pass every checkpoint: the file must hold at least Count
// records and its Count-th record (the chain's start for Count 0) must have
// the checkpoint's hash. When keys is not nil every checkpoint must also
// carry a signature by one of them (one that does not is a failure and is
// not compared with the file).
//
// It returns the Summary of the records that chain (all of them when the
// error is nil), the checkpoints the file fails, in the order given, and the
// chain's *ChainError or a read error. The log is intact and uncut only
// when both are empty.
func VerifyCheckpoints(r io.Reader, prev string, cps []Checkpoint, keys *jose.JSONWebKeySet) (Summary, []CheckpointFailure, error) {
	failed := make([]string, len(cps)) // a reason per checkpoint; "" while it holds
	checked := make([]bool, len(cps))
	at := map[int64][]int{} // record count → checkpoints of it
	for i, cp := range cps {
		if keys != nil {
			if err := cp.VerifySignature(keys); err != nil {
				failed[i], checked[i] = "bad signature: "+err.Error(), true
				continue
			}
		}
		at[cp.Count] = append(at[cp.Count], i)
	}
	compare := func(n int64, hash string) {
		for _, i := range at[n] {
			checked[i] = true
			if cps[i].Hash != hash {
				what := fmt.Sprintf("record %d has hash %s", n, short(hash))
				if n == 0 {
					what = fmt.Sprintf("the file's chain starts at %s", short(hash))
				}
				failed[i] = what + ", not the checkpoint's: the file was rewritten since"
			}
		}
	}
	compare(0, prev)
	s, err := verify(r, prev, func(n int, hash string) { compare(int64(n), hash) })

	var out []CheckpointFailure
	for i, cp := range cps {
		reason := failed[i]
		if !checked[i] {
			switch ce, isChain := errors.AsType[*ChainError](err); {
			case err == nil || (isChain && ce.Incomplete):
				reason = fmt.Sprintf("the file holds only %d complete records: records were cut off the end", s.Records)
			case isChain:
				reason = fmt.Sprintf("not checked: the chain breaks at line %d, before record %d", ce.Line, cp.Count)
			default:
				reason = "not checked: the file could not be read to the end"
			}
		}
		if reason != "" {
			out = append(out, CheckpointFailure{Checkpoint: cp, Reason: reason})
		}
	}
	return s, slices.Clip(out), err
}
