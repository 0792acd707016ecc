package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedSync replaces a file Log's fsync: each call announces itself on
// entered and waits for a value on release, which it returns.
type gatedSync struct {
	entered chan struct{}
	release chan error
	calls   atomic.Int64
	synced  atomic.Int64 // fsyncs that returned nil
}

func gate(t *testing.T, l *Log) *gatedSync {
	t.Helper()
	g := &gatedSync{entered: make(chan struct{}, 100), release: make(chan error)}
	real := l.fsync
	l.fsync = func() error {
		g.calls.Add(1)
		g.entered <- struct{}{}
		if err := <-g.release; err != nil {
			return err
		}
		if err := real(); err != nil {
			return err
		}
		g.synced.Add(1)
		return nil
	}
	return g
}

// queued waits until n records wait in l's queue behind a commit in flight.
func queued(t *testing.T, l *Log, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got := len(l.queue)
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

type writeResult struct {
	rec    Record
	err    error
	synced int64 // fsyncs completed when Write returned
}

func TestRecordsThatArriveDuringAnFsyncShareTheNextOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	g := gate(t, l)
	results := make(chan writeResult, 10)
	write := func(i int) {
		r, err := l.Write(context.Background(), sample(i))
		results <- writeResult{r, err, g.synced.Load()}
	}

	go write(0) // the leader of the first commit, alone in it
	<-g.entered
	for i := 1; i <= 8; i++ {
		go write(i)
	}
	queued(t, l, 8)
	select {
	case r := <-results:
		t.Fatalf("a Write returned before any fsync finished: %+v", r)
	default:
	}
	g.release <- nil // the first commit ends; its record returns
	if r := <-results; r.err != nil || r.synced != 1 || r.rec.RequestID != sample(0).RequestID {
		t.Fatalf("first Write = %+v, want record 0 after fsync 1", r)
	}
	<-g.entered // the eight queued records: one commit, one fsync
	select {
	case r := <-results:
		t.Fatalf("a queued Write returned before the fsync covering it: %+v", r)
	default:
	}
	g.release <- nil
	for range 8 {
		if r := <-results; r.err != nil || r.synced != 2 {
			t.Errorf("queued Write = %+v, want success after fsync 2", r)
		}
	}
	if c := g.calls.Load(); c != 2 {
		t.Errorf("%d fsyncs for 9 records that arrived in two groups, want 2", c)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	if s, err := Verify(f); err != nil || s.Records != 9 {
		t.Errorf("Verify = %d records, %v; want 9, nil", s.Records, err)
	}
}

func TestAFailedFsyncFailsEveryWriteItCoveredAndStopsTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g := gate(t, l)
	results := make(chan writeResult, 10)
	write := func(i int) {
		r, err := l.Write(context.Background(), sample(i))
		results <- writeResult{rec: r, err: err}
	}
	go write(0)
	<-g.entered
	for i := 1; i <= 5; i++ {
		go write(i)
	}
	queued(t, l, 5)
	g.release <- nil
	if r := <-results; r.err != nil {
		t.Fatalf("first Write: %v", r.err)
	}
	head := l.LastHash()
	<-g.entered
	g.release <- errors.New("EIO")
	for range 5 {
		r := <-results
		if r.err == nil || !strings.Contains(r.err.Error(), "EIO") {
			t.Errorf("a Write covered by a failed fsync returned %+v, want the fsync's error", r)
		}
		if r.rec.Hash != "" {
			t.Errorf("a failed Write returned a record: %+v", r.rec)
		}
	}
	if l.LastHash() != head {
		t.Error("a failed commit advanced the chain")
	}
	if _, err := l.Write(context.Background(), sample(9)); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Errorf("Write after a failed fsync = %v, want the log to refuse", err)
	}
	if c := g.calls.Load(); c != 2 {
		t.Errorf("%d fsyncs, want 2: a refused Write must not reach the disk", c)
	}
}

func TestAFailedWriteOfACommitLeavesTheFileWhole(t *testing.T) {
	// Through a file that fails on the second commit: the batch's records
	// fail and the next commit chains onto the last good record.
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, NoSync())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := l.Write(ctx, sample(0))
	if err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(path) // a read-only descriptor: write(2) fails with EBADF
	if err != nil {
		t.Fatal(err)
	}
	l.w = ro
	if _, err := l.Write(ctx, sample(1)); err == nil {
		t.Fatal("a Write whose write(2) failed succeeded")
	}
	ro.Close()
	l.w = l.file
	second, err := l.Write(ctx, sample(2))
	if err != nil {
		t.Fatalf("Write after a failed write that wrote nothing: %v", err)
	}
	if second.Prev != first.Hash {
		t.Errorf("the next record chains to %q, want the last good record %q", second.Prev, first.Hash)
	}
	l.Close()
	f, _ := os.Open(path)
	defer f.Close()
	if s, err := Verify(f); err != nil || s.Records != 2 {
		t.Errorf("Verify = %d records, %v; want 2, nil", s.Records, err)
	}
}

func TestCloseCommitsWhatIsQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	g := gate(t, l)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() {
		_, err := l.Write(context.Background(), sample(0))
		errs <- err
	})
	<-g.entered
	for i := 1; i <= 3; i++ {
		wg.Go(func() {
			_, err := l.Write(context.Background(), sample(i))
			errs <- err
		})
	}
	queued(t, l, 3)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	g.release <- nil
	<-g.entered
	g.release <- nil
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a Write queued before Close failed: %v", err)
		}
	}
	f, _ := os.Open(path)
	defer f.Close()
	if s, err := Verify(f); err != nil || s.Records != 4 {
		t.Errorf("Verify = %d records, %v; want 4, nil", s.Records, err)
	}
}

func TestConcurrentWritesWithFsyncChainInTimeOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	returned := map[string]Record{}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := sample(w*each + i)
				r.Time = time.Time{} // stamped by Write, in chain order
				got, err := l.Write(context.Background(), r)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				returned[got.Hash] = got
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	commits := l.commits
	l.mu.Unlock()
	if commits < 1 || commits > writers*each {
		t.Errorf("%d commits for %d records", commits, writers*each)
	}
	t.Logf("%d records in %d commits", writers*each, commits)
	l.Close()
	var last time.Time
	for i, line := range readLines(t, path) {
		_, hash, reason := checkLine([]byte(strings.TrimSuffix(line, "\n")))
		if reason != "" {
			t.Fatalf("line %d: %s", i+1, reason)
		}
		r, ok := returned[hash]
		if !ok {
			t.Fatalf("line %d is no record a Write returned", i+1)
		}
		if r.Time.Before(last) {
			t.Errorf("line %d's time %v is before the line above's %v", i+1, r.Time, last)
		}
		last = r.Time
	}
	f, _ := os.Open(path)
	defer f.Close()
	if s, err := Verify(f); err != nil || s.Records != writers*each {
		t.Errorf("Verify = %d records, %v; want %d, nil", s.Records, err, writers*each)
	}
}

// holding waits until l's leader holds its fsync, and says how many
// commits have been held.
func holding(t *testing.T, l *Log) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		h, held := l.holding, l.held
		l.mu.Unlock()
		if h {
			return held
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader never held its fsync")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestALeaderHoldsItsFsyncForTheWritersItExpects: after a commit of four,
// the next leader waits for four records before its fsync, and one fsync
// covers them; with fewer to come it waits only a bounded time; a lone
// writer never waits.
func TestALeaderHoldsItsFsyncForTheWritersItExpects(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g := gate(t, l)
	results := make(chan writeResult, 16)
	write := func(i int) {
		r, err := l.Write(context.Background(), sample(i))
		results <- writeResult{r, err, g.synced.Load()}
	}
	expect := func(n int, synced int64) {
		t.Helper()
		for range n {
			if r := <-results; r.err != nil || r.synced != synced {
				t.Fatalf("Write = %+v, want success after fsync %d", r, synced)
			}
		}
	}

	// A commit of one, then one of four: the peak is four.
	go write(0)
	<-g.entered
	for i := 1; i <= 4; i++ {
		go write(i)
	}
	queued(t, l, 4)
	g.release <- nil
	expect(1, 1)
	<-g.entered
	g.release <- nil
	expect(4, 2)

	// The next leader holds for the three it expects; one fsync covers all.
	go write(5)
	held := holding(t, l)
	for i := 6; i <= 8; i++ {
		go write(i)
	}
	<-g.entered
	g.release <- nil
	expect(4, 3)

	// With only two coming the hold ends by itself, and the fsync covers
	// the two.
	go write(9)
	holding(t, l)
	go write(10)
	<-g.entered
	g.release <- nil
	expect(2, 4)
	if g.calls.Load() != 4 {
		t.Errorf("%d fsyncs, want 4", g.calls.Load())
	}
	l.mu.Lock()
	if l.held != held+1 {
		t.Errorf("%d commits held, want %d", l.held, held+1)
	}
	l.mu.Unlock()
}

func TestALoneWriterNeverHolds(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 20 {
		if _, err := l.Write(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != 0 || l.commits != 20 {
		t.Errorf("a lone writer's 20 records: %d commits, %d held; want 20 commits, none held", l.commits, l.held)
	}
}
