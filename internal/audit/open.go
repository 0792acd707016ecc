package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Open opens the audit log at path for appending, creating it with mode 0600.
// When the file already holds records, the chain resumes from the last
// complete record's hash. Open checks only the end of the file: `ferry audit
// verify` checks the whole of it.
//
// Crash recovery. A crash (kill -9, power cut) while a commit is being
// written can leave the file ending in part of a line: a record whose
// Write never returned, so no credential was handed out on it. Open does
// not refuse such a file and never chains onto the fragment; it repairs the
// end without losing a complete record:
//
//   - a final line that lacks only its newline, and is a whole record that
//     chains to the line before it, is completed with the newline;
//   - otherwise the bytes after the last newline are copied to a file beside
//     the log, PATH.torn-TIME (0600, synced), and then cut off, so the
//     chain continues after the last complete record.
//
// Either repair is logged (WithLogger) and returned by Recovered. What is
// not a torn write is refused and left as it is: a last complete line that
// fails its own hash (an edit), or a "fragment" longer than any record or
// not shaped like the start of one (the path names some other file).
//
// The file is locked (flock) for as long as the Log is open, so two Ferry
// processes cannot interleave two chains in one file.
//
// Path "-" writes to standard output, starting a new chain at Genesis.
func Open(path string, opts ...Option) (*Log, error) {
	l := newLog(nil, Genesis)
	l.path, l.sync = path, true
	for _, o := range opts {
		o(l)
	}
	if path == "-" {
		l.w = os.Stdout
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	fail := func(err error) (*Log, error) {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	t, err := readTail(f, fi.Size())
	if err != nil {
		return fail(err)
	}
	prev, rec, err := planRecovery(t)
	if err != nil {
		return fail(err)
	}
	if rec != nil {
		if err := l.applyRecovery(f, t, rec); err != nil {
			return fail(err)
		}
		if rec.Completed {
			t.complete += int64(len(t.torn)) + 1
		}
	}
	l.w, l.file, l.fsync = f, f, f.Sync
	l.size, l.prev = t.complete, prev
	l.base = baseCount{size: t.complete, known: t.complete == 0}
	l.recovered = rec
	return l, nil
}

// tail is the end of a log file.
type tail struct {
	complete int64  // the file's length up to and including its last '\n'
	last     []byte // the last complete line, without its '\n'; nil when there is none
	torn     []byte // the bytes after the last '\n'; empty when the file ends in one
}

// readTail reads backwards from the end of the file until it holds the last
// complete line and whatever follows it, so reopening a large log costs a
// line or two, not the whole file.
func readTail(f *os.File, size int64) (tail, error) {
	const chunk = 64 << 10
	var buf []byte // the bytes from off to the end of the file
	for off := size; ; {
		lastNL := bytes.LastIndexByte(buf, '\n')
		if lastNL >= 0 || off == 0 {
			t := tail{complete: off + int64(lastNL) + 1, torn: buf[lastNL+1:]}
			if len(t.torn) > MaxLineBytes {
				return tail{}, fmt.Errorf("the file ends in %d bytes without a newline, more than any record (%d): not a record cut short; check it with `ferry audit verify`", len(t.torn), MaxLineBytes)
			}
			prevNL := -1
			if lastNL >= 0 {
				prevNL = bytes.LastIndexByte(buf[:lastNL], '\n')
			}
			if lastNL >= 0 && (prevNL >= 0 || off == 0) {
				t.last = buf[prevNL+1 : lastNL]
				return t, nil
			}
			if lastNL < 0 { // off == 0: no newline in the whole file
				return t, nil
			}
		}
		if len(buf) > 2*(MaxLineBytes+1) {
			return tail{}, fmt.Errorf("last line is longer than %d bytes", MaxLineBytes)
		}
		n := min(int64(chunk), off)
		off -= n
		next := make([]byte, n, int(n)+len(buf))
		if _, err := f.ReadAt(next, off); err != nil {
			return tail{}, fmt.Errorf("read last record: %w", err)
		}
		buf = append(next, buf...)
	}
}

// Recovery is what Open did to a file that ended in part of a line.
type Recovery struct {
	// Offset is where the partial line started.
	Offset int64
	// Bytes is its length.
	Bytes int
	// Completed is true when it was a whole record missing only its
	// newline, which Open added; the record stays in the chain.
	Completed bool
	// SavedTo is the file the partial line was copied to before it was cut
	// off ("" when Completed).
	SavedTo string
}

// planRecovery decides, without changing anything, where the chain resumes
// and what must be done to the end of the file first (nil: nothing).
func planRecovery(t tail) (prev string, rec *Recovery, err error) {
	prev = Genesis
	if t.last != nil {
		_, hash, reason := checkLine(t.last)
		if reason != "" {
			return "", nil, fmt.Errorf("last record is corrupt: %s; check it with `ferry audit verify`", reason)
		}
		prev = hash
	}
	if len(t.torn) == 0 {
		return prev, nil, nil
	}
	rec = &Recovery{Offset: t.complete, Bytes: len(t.torn)}
	if f, hash, reason := checkLine(t.torn); reason == "" && *f.Prev == prev {
		rec.Completed = true
		return hash, rec, nil
	}
	// A write cut short leaves a prefix of a record; a crash on some file
	// systems, zeros where the data never reached the disk.
	if c := t.torn[0]; c != '{' && c != 0 {
		return "", nil, fmt.Errorf("the file ends in %d bytes without a newline that do not start like a record: not a record cut short; check it with `ferry audit verify`", len(t.torn))
	}
	return prev, rec, nil
}

// applyRecovery carries out rec: it completes the final record, or saves the
// torn bytes beside the log (synced, directory too) before cutting them off,
// so they are never lost before they are somewhere else.
func (l *Log) applyRecovery(f *os.File, t tail, rec *Recovery) error {
	if rec.Completed {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("complete the final record: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("complete the final record: %w", err)
		}
		l.logger.Warn("audit log: the final record lacked its newline (a crash mid-write); completed it",
			"file", l.path, "offset", rec.Offset, "bytes", rec.Bytes)
		return nil
	}
	saved := fmt.Sprintf("%s.torn-%s", l.path, l.now().UTC().Format("20060102T150405.000000000Z"))
	if err := writeSynced(saved, t.torn); err != nil {
		return fmt.Errorf("set aside the incomplete final record: %w", err)
	}
	if err := f.Truncate(t.complete); err != nil {
		return fmt.Errorf("cut off the incomplete final record (saved in %s): %w", saved, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cut off the incomplete final record (saved in %s): %w", saved, err)
	}
	rec.SavedTo = saved
	l.logger.Warn("audit log: the file ended in an incomplete record (a crash mid-write); set it aside and continuing the chain after the last complete record",
		"file", l.path, "offset", rec.Offset, "bytes", rec.Bytes, "saved_to", saved)
	return nil
}

// writeSynced creates path (never overwriting), writes data and syncs the
// file and its directory.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// baseCount is the number of records a file held when it was opened,
// counted on first use: Open itself reads only the end of the file.
type baseCount struct {
	mu    sync.Mutex
	size  int64 // the file's length at Open, after recovery; it ends in '\n'
	n     int64
	known bool
}

// Head returns the number of records in the log — those the file held at
// Open and those committed since — and the last one's hash: what a
// checkpoint pins. The first call on a reopened file counts its lines,
// reading it once.
func (l *Log) Head() (count int64, hash string, err error) {
	base, err := l.baseRecords()
	if err != nil {
		return 0, "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return base + l.appended, l.prev, nil
}

func (l *Log) baseRecords() (int64, error) {
	b := &l.base
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known {
		return b.n, nil
	}
	buf := make([]byte, 1<<20)
	var n int64
	for off := int64(0); off < b.size; {
		m, err := l.file.ReadAt(buf[:min(int64(len(buf)), b.size-off)], off)
		n += int64(bytes.Count(buf[:m], []byte{'\n'}))
		off += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && off >= b.size) {
			return 0, fmt.Errorf("count audit records: %w", err)
		}
		if m == 0 {
			return 0, fmt.Errorf("count audit records: file shorter than %d bytes", b.size)
		}
	}
	b.n, b.known = n, true
	return n, nil
}
