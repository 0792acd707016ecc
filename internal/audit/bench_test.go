package audit

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// perRecordLog is the audit log as it was before group commit, kept here
// as the baseline: one mutex, and under it one write(2) and one fsync per
// record.
type perRecordLog struct {
	mu   sync.Mutex
	f    *os.File
	prev string
	buf  []byte
}

func (l *perRecordLog) Write(_ context.Context, r Record) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	enc, err := encode(&r)
	if err != nil {
		return Record{}, err
	}
	var hash string
	l.buf, hash = appendSealed(l.buf[:0], enc, l.prev)
	if _, err := l.f.Write(l.buf); err != nil {
		return Record{}, err
	}
	if err := l.f.Sync(); err != nil {
		return Record{}, err
	}
	r.Prev, r.Hash, l.prev = l.prev, hash, hash
	return r, nil
}

type writer interface {
	Write(context.Context, Record) (Record, error)
}

// BenchmarkWriteParallel compares, in one run, the per-record fsync the
// log used to do with group commit, with 1 and 16 goroutines writing at
// once (16: a broker answering 16 connections). The disk's fsync latency
// drifts on a shared machine, so each iteration writes one round of
// records through each (in alternating order) and the figures compare
// rounds taken side by side: records/s of each, their ratio (speedup) and
// how many fsyncs group commit needed per record. ns/op is the time of one
// pair of rounds. docs/performance.md has the results.
func BenchmarkWriteParallel(b *testing.B) {
	const round = 256 // records per implementation per iteration
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "before.log"), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			before := &perRecordLog{f: f, prev: Genesis}
			after, err := Open(filepath.Join(b.TempDir(), "after.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer after.Close()
			var tBefore, tAfter time.Duration
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					tBefore += writeRound(b, before, writers, round)
					tAfter += writeRound(b, after, writers, round)
				} else {
					tAfter += writeRound(b, after, writers, round)
					tBefore += writeRound(b, before, writers, round)
				}
			}
			n := float64(b.N * round)
			after.mu.Lock()
			commits := after.commits
			after.mu.Unlock()
			b.ReportMetric(n/tBefore.Seconds(), "per-record-fsync-rec/s")
			b.ReportMetric(n/tAfter.Seconds(), "group-commit-rec/s")
			b.ReportMetric(tBefore.Seconds()/tAfter.Seconds(), "speedup")
			b.ReportMetric(float64(commits)/n, "fsyncs/record")
		})
	}
}

// writeRound writes n records through w from the given number of
// goroutines and returns how long that took.
func writeRound(b *testing.B, w writer, writers, n int) time.Duration {
	r := sample(1)
	ctx := context.Background()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := w.Write(ctx, r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkWrite is one writer's cost per record with and without the
// fsync, and of the chaining alone.
func BenchmarkWrite(b *testing.B) {
	cases := []struct {
		name string
		open func(b *testing.B) *Log
	}{
		{"file, fsync each commit (default)", func(b *testing.B) *Log {
			l, err := Open(filepath.Join(b.TempDir(), "audit.log"))
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
		{"file, NoSync", func(b *testing.B) *Log {
			l, err := Open(filepath.Join(b.TempDir(), "audit.log"), NoSync())
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
		{"io.Discard", func(*testing.B) *Log { return New(io.Discard, Genesis) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			l := c.open(b)
			defer l.Close()
			r := sample(1)
			ctx := context.Background()
			for b.Loop() {
				if _, err := l.Write(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
