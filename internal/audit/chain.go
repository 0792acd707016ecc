package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Genesis is the prev of the first record of a chain: 64 zeros, the width of
// a hex SHA-256, so every record's prev has the same shape.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// MaxLineBytes bounds one record's line. Write refuses larger records and
// Verify reports larger lines, so a reader never has to buffer without limit.
const MaxLineBytes = 1 << 20

// The hash scheme.
//
// A record is written as one line: the encoding/json marshalling of Record
// (fields in struct order, Hash last) followed by '\n'. Its hash is
//
//	hex(sha256(prev || line-with-hash-blanked))
//
// where prev is the previous record's hash as its 64 hex characters (Genesis
// for the first record) and line-with-hash-blanked is the line's exact bytes
// with the value of the final "hash" member replaced by "" — that is, what
// json.Marshal produced with Hash set to "".
//
// Verification hashes the line's raw bytes, never a re-marshalled struct, so
// every edit is detected: a changed value, an added key the struct does not
// know (which a decode would silently drop), a removed key, a duplicated key,
// even whitespace. It also means a record written by a later Ferry with more
// fields still verifies with this code. The "hash" member must be the line's
// last member, written exactly as `,"hash":"<64 lowercase hex>"}`; anything
// else is reported as malformed.
//
// The chain is tamper-evident, not tamper-proof: it has no secret, so someone
// who can rewrite the file can recompute every hash after an edit. Record the
// last hash somewhere the log's writer cannot change (Summary.LastHash, shown
// by `ferry audit verify`) to pin the history up to that point.

const (
	hashKey    = `,"hash":`
	blankHash  = `""}`
	hashSuffix = len(hashKey) + 1 + 64 + 2 // ,"hash":"<64 hex>"}
)

// chainHash computes the hash of a line whose hash value is blanked.
func chainHash(prev string, blanked []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(blanked)
	return hex.EncodeToString(h.Sum(nil))
}

// prevPlaceholder is where encode leaves room for the prev hash, which only
// the commit that chains the record knows.
const prevPlaceholder = `,"prev":"` + Genesis + `"` + hashKey + blankHash

// encode marshals r as its line will read, except that prev is Genesis and
// the hash is blank: the costly part of sealing a record, done before the
// record joins the commit queue. appendSealed finishes the line.
func encode(r *Record) ([]byte, error) {
	r.Prev, r.Hash = Genesis, ""
	b, err := appendRecord(make([]byte, 0, 1024), r)
	if err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(b, []byte(prevPlaceholder)) {
		// Only a change to Record's field order can cause this.
		return nil, errors.New("encode audit record: prev and hash are not the last members")
	}
	r.Prev = ""
	if n := len(b) + 64 + 1; n > MaxLineBytes {
		return nil, fmt.Errorf("encode audit record: line of %d bytes exceeds the %d byte limit", n, MaxLineBytes)
	}
	return b, nil
}

// appendSealed appends to dst the line of the record encoded as enc,
// chained to prev ('\n' included), and returns it with the record's hash.
func appendSealed(dst, enc []byte, prev string) ([]byte, string) {
	start := len(dst)
	dst = append(dst, enc...)
	copy(dst[len(dst)-len(`"`+hashKey+blankHash)-64:], prev)
	hash := chainHash(prev, dst[start:])
	dst = append(dst[:len(dst)-len(blankHash)], '"')
	dst = append(dst, hash...)
	dst = append(dst, `"}`...)
	dst = append(dst, '\n')
	return dst, hash
}

// lineFields are the members of a line that verification and reports read.
type lineFields struct {
	Prev     *string   `json:"prev"`
	Time     time.Time `json:"time"`
	Decision string    `json:"decision"`
}

// checkLine checks that line (without its '\n') is a well-formed record whose
// hash recomputes from its own bytes and its own prev. It returns the record's
// fields and hash, or the reason the line is broken. It does not check the link
// to the previous line: that needs the caller's state.
func checkLine(line []byte) (f lineFields, hash string, reason string) {
	if err := json.Unmarshal(line, &f); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return f, "", "not valid JSON (line truncated or corrupted)"
		}
		return f, "", "not a valid record: " + err.Error()
	}
	if f.Prev == nil {
		return f, "", `no "prev" member`
	}
	if !isHash(*f.Prev) {
		return f, "", `"prev" is not a 64-character lowercase hex hash`
	}
	// value is where the hash's opening quote sits if the line ends as written.
	value := len(line) - hashSuffix + len(hashKey)
	if value < len(hashKey) || string(line[value-len(hashKey):value+1]) != hashKey+`"` || !bytes.HasSuffix(line, []byte(`"}`)) {
		return f, "", `"hash" is not the last member (record edited)`
	}
	hash = string(line[value+1 : len(line)-2])
	if !isHash(hash) {
		return f, "", `"hash" is not a 64-character lowercase hex hash`
	}
	blanked := make([]byte, 0, value+len(blankHash))
	blanked = append(blanked, line[:value]...)
	blanked = append(blanked, blankHash...)
	if chainHash(*f.Prev, blanked) != hash {
		return f, "", "hash mismatch (record edited)"
	}
	return f, hash, ""
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
