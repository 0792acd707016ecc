package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"
)

// ChainError names the first line of a log that breaks the hash chain.
type ChainError struct {
	Line   int    // 1-based
	Reason string // e.g. "hash mismatch (record edited)"
	// Incomplete marks a final line without its newline: the trace of a
	// write cut short (a crash), which `ferry serve` repairs on start,
	// rather than of an edit. The lines before it verified.
	Incomplete bool
}

func (e *ChainError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Summary describes a log whose chain is intact.
type Summary struct {
	Records  int
	First    time.Time // time of the first record; zero when there are none
	Last     time.Time // time of the last record
	Allows   int
	Denies   int
	Releases int
	LastHash string // the chain's head: keep it elsewhere to pin this history
}

// Verify checks a whole log: every line is a record whose hash recomputes
// from its own bytes, the first record's prev is Genesis, and every other
// record's prev is the hash of the line before it. It returns a *ChainError
// naming the first broken line, or another error when r cannot be read. An
// empty log is intact and has no records.
func Verify(r io.Reader) (Summary, error) { return VerifyFrom(r, Genesis) }

// VerifyFrom is Verify for a log that continues a chain: its first record's
// prev must be prev (a Log made by New with that prev).
func VerifyFrom(r io.Reader, prev string) (Summary, error) {
	s, err := verify(r, prev, nil)
	if err != nil {
		return Summary{}, err
	}
	return s, nil
}

// verify checks the chain from prev, calling atRecord (when not nil) with
// each record's number and hash as soon as it verified. On a break it
// returns the Summary of the records before it.
func verify(r io.Reader, prev string, atRecord func(n int, hash string)) (Summary, error) {
	s := Summary{LastHash: prev}
	err := eachLine(r, func(n int, line []byte, reason string) error {
		if reason != "" {
			return &ChainError{Line: n, Reason: reason, Incomplete: reason == reasonIncomplete}
		}
		f, hash, reason := checkLine(line)
		if reason != "" {
			return &ChainError{Line: n, Reason: reason}
		}
		if *f.Prev != s.LastHash {
			if n == 1 {
				return &ChainError{Line: n, Reason: "prev is not the start of the chain (lines removed from the start, or the wrong starting hash)"}
			}
			return &ChainError{Line: n, Reason: fmt.Sprintf("prev does not match line %d's hash (line removed or reordered)", n-1)}
		}
		if s.Records == 0 {
			s.First = f.Time
		}
		s.Last = f.Time
		switch f.Decision {
		case Allow:
			s.Allows++
		case Deny:
			s.Denies++
		case Release:
			s.Releases++
		}
		s.Records++
		s.LastHash = hash
		if atRecord != nil {
			atRecord(s.Records, hash)
		}
		return nil
	})
	return s, err
}

// reasonIncomplete is the reason given for a final line without its newline.
const reasonIncomplete = "incomplete final record (no trailing newline): a write cut short, as by a crash; `ferry serve` repairs the end of the file when it next opens it"

// eachLine calls fn with every line of r (without its '\n') and its 1-based
// number, stopping at fn's first error. A line that cannot be a record — an
// empty line, one over MaxLineBytes, or a last line without '\n' (a torn
// write) — is passed with a non-empty broken reason and a nil line.
func eachLine(r io.Reader, fn func(n int, line []byte, broken string) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		tooLong := false
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				if len(long) <= MaxLineBytes {
					long = append(long, line...)
				}
			}
			tooLong = len(long) > MaxLineBytes
			line = long
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read audit log line %d: %w", n, err)
		}
		var reason string
		switch {
		case err == io.EOF && len(line) == 0:
			return nil
		case err == io.EOF:
			reason = reasonIncomplete
		case tooLong:
			reason = fmt.Sprintf("line longer than %d bytes", MaxLineBytes)
		case len(line) == 1:
			reason = "empty line"
		}
		if reason != "" {
			line = nil
		} else {
			line = line[:len(line)-1]
		}
		if err := fn(n, line, reason); err != nil {
			return err
		}
		if err == io.EOF {
			return nil
		}
	}
}
