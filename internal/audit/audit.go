// Package audit writes and checks Ferry's audit log: one JSON record a line
// for every decision, allow or deny, each chained to the one before it by a
// SHA-256 hash so that an edited, removed or reordered line is detected (see
// Verify), and checkpoints of the chain's head logged elsewhere so that
// records cut off the end are detected too (see Checkpointer). Records never
// hold a token, a secret key, a session token or an access token.
package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sync"
	"time"
)

// Log appends records to a hash chain. It is safe for concurrent use.
//
// Durability, by group commit: Write returns only once its record is on disk
// (write(2), then fsync), but records that arrive while an fsync is in
// flight wait for the next one and share it. The first writer to find no
// commit under way becomes the leader: it takes every queued record, chains
// them in queue order, writes them with one write(2) and fsyncs once, then
// wakes the others; a writer whose record came in meanwhile leads the next
// commit. One fsync so covers as many decisions as arrived during the last
// one. Under load a leader also holds its fsync while fewer records are
// queued than the busiest recent commit covered, for at most two of the
// disk's usual fsync times, so that the writers it expects (those the last
// commits woke, already on their next request) share it: Postgres's
// commit_delay and commit_siblings, with the delay set by the disk's own
// pace and the siblings counted from the commits themselves. A lone writer
// never waits. A broker under load so spends far fewer than one fsync a
// decision (docs/performance.md has the figures). A failed write fails
// every Write it covered; a failed fsync does too and leaves the Log
// refusing further writes, since the kernel may have dropped the data
// while the file looks whole.
//
// NoSync trades the fsync away where losing the last records in a power cut
// is acceptable. Close always syncs.
type Log struct {
	mu     sync.Mutex
	cond   *sync.Cond // broadcast whenever a commit ends
	w      io.Writer
	file   *os.File     // nil unless the Log owns a file
	fsync  func() error // file.Sync; tests may slow it or make it fail
	sync   bool
	path   string
	logger *slog.Logger
	now    func() time.Time

	// Guarded by mu; changed only when a commit ends.
	size     int64  // the file's length after the last committed record
	prev     string // the last committed record's hash
	appended int64  // records committed by this Log
	commits  int64  // write(2)+fsync rounds that committed records
	broken   error  // set when a failed write or fsync may have left a partial line
	closed   bool

	queue    []*pending // records waiting for the next commit, in chain order
	leading  bool       // a commit is under way (its leader works without mu)
	leadBufs commitBuffers
	// What a leader holds its fsync for (see hold): the most records a
	// recent commit covered, and how many commits ago that was; whether a
	// leader is holding, and the channel that tells it enough have come.
	peak, sincePeak int
	holding         bool
	enough          chan struct{}
	syncTime        time.Duration // a moving average of the fsync's duration
	held            int64         // commits whose leader held its fsync

	base      baseCount // records in the file before Open
	recovered *Recovery // what Open did to a torn tail, if anything
}

// pending is one Write waiting for the commit that covers it.
type pending struct {
	rec  Record
	enc  []byte // rec encoded with a placeholder prev; see encode
	done bool   // set, with err, when its commit ended
	err  error
}

// commitBuffers are reused by successive leaders; only the current leader
// touches them.
type commitBuffers struct {
	lines []byte
	spare []*pending
}

// maxReusedBuffer caps what a Log keeps between commits, so one burst of
// large records does not pin memory.
const maxReusedBuffer = 1 << 20

// maxCommitDelay bounds how long a leader holds its fsync, however slow
// the disk; peakMemory is how many commits a peak is remembered for, so
// that the number of writers expected follows the load down.
const (
	maxCommitDelay = 2 * time.Millisecond
	peakMemory     = 16
)

// Option configures Open.
type Option func(*Log)

// NoSync makes a file Log skip the fsync after each commit; the OS still
// writes the data out, and Close syncs.
func NoSync() Option { return func(l *Log) { l.sync = false } }

// WithLogger is where Open reports what it repaired (a torn final record it
// set aside); by default nowhere.
func WithLogger(logger *slog.Logger) Option { return func(l *Log) { l.logger = logger } }

func newLog(w io.Writer, prev string) *Log {
	l := &Log{w: w, prev: prev, now: time.Now, logger: slog.New(slog.DiscardHandler), enough: make(chan struct{}, 1)}
	l.cond = sync.NewCond(&l.mu)
	l.base.known = true // nothing came before, unless Open says otherwise
	return l
}

// New returns a Log that writes to w, chaining its first record to prev
// (Genesis for a new chain). It never closes or syncs w.
func New(w io.Writer, prev string) *Log { return newLog(w, prev) }

// Decisions returns the values a record's Decision may take. Write refuses
// any other; this is the one place that lists them.
func Decisions() []string { return []string{Allow, Deny, Release} }

func checkDecision(d string) error {
	if !slices.Contains(Decisions(), d) {
		return fmt.Errorf("write audit record: decision %q is not one of %q", d, Decisions())
	}
	return nil
}

// Write completes r — Time (UTC now when zero), Prev and Hash — appends it
// as one line and returns it as written, once the commit that covers it is
// on disk. A Decision not in Decisions() is refused. Reason and Error are
// scrubbed of anything shaped like a JWT, in case an upstream message
// echoed one.
//
// ctx is accepted for sinks that may block; a cancelled context does not
// stop a decision from being recorded.
func (l *Log) Write(ctx context.Context, r Record) (Record, error) {
	_ = ctx
	if err := checkDecision(r.Decision); err != nil {
		return Record{}, err
	}
	r.Reason = redact(r.Reason)
	r.Error = redact(r.Error)
	if r.Credential != nil {
		c := *r.Credential // never alias the caller's struct
		c.ExpiresAt = c.ExpiresAt.UTC()
		r.Credential = &c
	}
	if r.Released != nil {
		rel := *r.Released
		rel.Detail = redact(rel.Detail)
		r.Released = &rel
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Record{}, errors.New("write audit record: log is closed")
	}
	if l.broken != nil {
		return Record{}, fmt.Errorf("write audit record: log unusable after an earlier failed write: %w", l.broken)
	}
	// Time is taken under the lock, in queue order, so the file's records
	// are in time order as well as chain order.
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	r.Time = r.Time.UTC()
	enc, err := encode(&r)
	if err != nil {
		return Record{}, err
	}
	p := &pending{rec: r, enc: enc}
	l.queue = append(l.queue, p)
	if l.holding && len(l.queue) >= l.peak {
		select {
		case l.enough <- struct{}{}:
		default: // told already
		}
	}
	for !p.done {
		if l.leading {
			l.cond.Wait()
			continue
		}
		l.commit()
	}
	if p.err != nil {
		return Record{}, p.err
	}
	return p.rec, nil
}

// commit writes and syncs every queued record as one batch. It is called
// with mu held and no commit under way, and returns with mu held; it drops
// mu while it writes, so that new records queue up for the next commit.
func (l *Log) commit() {
	l.leading = true
	if l.file != nil && l.sync {
		l.hold()
	}
	batch := l.queue
	l.queue = l.leadBufs.spare[:0]
	if l.sincePeak++; len(batch) >= l.peak || l.sincePeak >= peakMemory {
		l.peak, l.sincePeak = len(batch), 0
	}
	prev, size, broken := l.prev, l.size, l.broken
	l.mu.Unlock()

	n, head, err, fatal := l.writeBatch(batch, prev, size, broken)

	l.mu.Lock()
	l.leading = false
	switch {
	case err == nil:
		l.prev = head
		l.size += int64(n)
		l.appended += int64(len(batch))
		l.commits++
	case fatal && l.broken == nil:
		l.broken = err
	}
	for _, p := range batch {
		p.done = true
		if err != nil {
			p.err = err
		}
		p.enc = nil
	}
	clear(batch)
	if cap(batch) <= maxReusedBuffer/8 {
		l.leadBufs.spare = batch[:0]
	}
	l.cond.Broadcast()
}

// hold keeps the leader, with mu held on entry and return, from its
// fsync while fewer records are queued than the recent peak, for at most
// two fsync times: the writers of the last commits are on their next
// requests, and one fsync can cover them as well as it covers fewer. A
// held commit so takes at most three fsync times instead of one; the hold
// is skipped before the first fsync is timed and whenever the queue
// already holds the peak (a lone writer's peak is one).
func (l *Log) hold() {
	wait := min(2*l.syncTime, maxCommitDelay)
	if wait <= 0 || len(l.queue) >= l.peak {
		return
	}
	l.held++
	timer := time.NewTimer(wait)
	defer timer.Stop()
	l.holding = true
	defer func() { l.holding = false }()
	for len(l.queue) < l.peak {
		l.mu.Unlock()
		select {
		case <-l.enough:
			l.mu.Lock()
		case <-timer.C:
			l.mu.Lock()
			return
		}
	}
}

// syncTimed runs the fsync and folds its duration into syncTime, a moving
// average that weighs the latest one eighth. Only the leader calls it,
// without mu; the next leader reads syncTime under mu, which this one
// takes back before any other can lead.
func (l *Log) syncTimed() error {
	start := time.Now()
	err := l.fsync()
	d := time.Since(start)
	if l.syncTime == 0 {
		l.syncTime = d
	} else {
		l.syncTime += (d - l.syncTime) / 8
	}
	return err
}

// writeBatch chains batch onto prev and writes it. It returns the bytes
// written, the new head's hash and, on failure, the error every record of
// the batch gets, and whether the Log must stop (fatal).
func (l *Log) writeBatch(batch []*pending, prev string, size int64, broken error) (n int, head string, err error, fatal bool) {
	if broken != nil {
		return 0, "", fmt.Errorf("write audit record: log unusable after an earlier failed write: %w", broken), false
	}
	buf := l.leadBufs.lines[:0]
	head = prev
	for _, p := range batch {
		var hash string
		buf, hash = appendSealed(buf, p.enc, head)
		p.rec.Prev, p.rec.Hash = head, hash
		head = hash
	}
	if cap(buf) <= maxReusedBuffer {
		l.leadBufs.lines = buf[:0]
	} else {
		l.leadBufs.lines = nil
	}
	n, err = l.w.Write(buf)
	if err == nil && n < len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return n, "", fmt.Errorf("write audit record: %w", err), !l.undo(n, size)
	}
	if l.file != nil && l.sync {
		if err := l.syncTimed(); err != nil {
			// After a failed fsync the kernel may have dropped the lines
			// while the file still looks whole: stop writing rather than
			// chain onto records that may not exist.
			return n, "", fmt.Errorf("sync audit log: %w", err), true
		}
	}
	return n, head, nil, false
}

// undo removes what a failed write of n bytes left behind, so the file never
// keeps a partial line, and reports whether that worked. When it cannot, the
// Log refuses further writes rather than chain new records onto a torn one.
func (l *Log) undo(n int, size int64) bool {
	if n == 0 && l.file == nil {
		return true // nothing reached the writer
	}
	if l.file != nil {
		return l.file.Truncate(size) == nil
	}
	return false
}

// Sync flushes a file Log to disk. It does nothing for other writers.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil || l.closed {
		return nil
	}
	if err := l.file.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	return nil
}

// LastHash returns the hash of the last record committed (or the chain's
// starting prev when none was).
func (l *Log) LastHash() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.prev
}

// Path is the file the Log appends to: "" for a Log made by New, "-" for
// standard output.
func (l *Log) Path() string { return l.path }

// Recovered says what Open did to the file's torn final record, nil when
// the file ended cleanly.
func (l *Log) Recovered() *Recovery { return l.recovered }

// Close commits what is queued, syncs and closes a file Log and releases its
// lock. Further writes fail. Close of a Log made by New or for "-" closes
// nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for l.leading || len(l.queue) > 0 {
		if l.leading {
			l.cond.Wait()
			continue
		}
		l.commit()
	}
	if l.file == nil {
		return nil
	}
	serr := l.file.Sync()
	cerr := l.file.Close()
	if serr != nil {
		return fmt.Errorf("close audit log: sync: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("close audit log: %w", cerr)
	}
	return nil
}

// jwtShape matches a compact JWS/JWE, or the start of one cut short: a
// base64url JSON header ("eyJ") and one or more further segments.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{5,}(\.[A-Za-z0-9_-]*){1,4}`)

func redact(s string) string {
	if s == "" {
		return s
	}
	return jwtShape.ReplaceAllString(s, "[redacted token]")
}
