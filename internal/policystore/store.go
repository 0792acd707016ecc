// Package policystore holds the live trust policy set and reloads it from
// disk, keeping the last good set when a reload fails.
package policystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-broker/ferry/internal/trust"
)

// Store serves the current policy set to concurrent requests without locks
// and swaps in a new one atomically.
type Store struct {
	dir    string
	opts   trust.LoadOptions
	logger *slog.Logger

	current atomic.Pointer[trust.Set]

	mu      sync.Mutex // serialises reloads
	loaded  string     // fingerprint of the files behind current
	failed  string     // fingerprint of the files lastErr is about
	lastErr error
	stats   reloadStats // for Collector; guarded by mu
}

// Open loads dir once; a broken set at start is an error, since there is no
// last good set to fall back on.
func Open(dir string, opts trust.LoadOptions, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, opts: opts, logger: logger}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the live set.
func (s *Store) Current() *trust.Set { return s.current.Load() }

// Known reports whether name is a loaded policy.
func (s *Store) Known(name string) bool {
	set := s.current.Load()
	if set == nil {
		return false
	}
	_, ok := set.Lookup(name)
	return ok
}

// LastError is the error of the most recent reload, nil after a good one.
func (s *Store) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Reload reads the directory again if its files changed. It reports whether
// a new set was installed; on error the previous set stays live.
func (s *Store) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed, err := s.reload()
	s.stats.record(changed, err, time.Now())
	return changed, err
}

func (s *Store) reload() (bool, error) {
	fp, err := fingerprint(s.dir)
	if err != nil {
		s.lastErr = fmt.Errorf("reload policies from %s: %w", s.dir, err)
		return false, s.lastErr
	}
	if fp == s.loaded && s.current.Load() != nil {
		// The files are those behind the live set again (a broken edit
		// was reverted): nothing to install, and nothing wrong any more.
		s.lastErr = nil
		return false, nil
	}
	if fp == s.failed && s.lastErr != nil {
		// The same broken files as last time: the same answer, unparsed.
		return false, s.lastErr
	}
	set, err := trust.LoadDir(s.dir, s.opts)
	if err != nil {
		s.lastErr = fmt.Errorf("reload policies from %s: %w", s.dir, err)
		s.failed = fp
		return false, s.lastErr
	}
	s.current.Store(set)
	s.loaded, s.lastErr, s.failed = fp, nil, ""
	// Parsing leaves behind many times the set's own size in YAML trees;
	// hand it back to the system now rather than carry it as resident
	// memory until the scavenger gets round to it. Reloads are rare.
	debug.FreeOSMemory()
	return true, nil
}

// Watch reloads every interval and whenever signal fires, until ctx ends.
func (s *Store) Watch(ctx context.Context, interval time.Duration, signal <-chan os.Signal) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			s.reloadAndLog(ctx, false)
		case <-signal:
			s.reloadAndLog(ctx, true)
		}
	}
}

// reloadAndLog reloads and says what happened. A failure is logged when it
// is new or when an operator asked (SIGHUP); a directory that stays broken
// is not reported again on every tick.
func (s *Store) reloadAndLog(ctx context.Context, asked bool) {
	prev := s.LastError()
	changed, err := s.Reload()
	switch {
	case err != nil:
		if asked || prev == nil || prev.Error() != err.Error() {
			s.logger.ErrorContext(ctx, "policy reload failed; keeping the last good set", "err", err)
		}
	case changed:
		s.logger.InfoContext(ctx, "policies reloaded", "policies", s.Current().Len())
	case prev != nil:
		s.logger.InfoContext(ctx, "policy files fixed; the last good set is live", "policies", s.Current().Len())
	}
}

// fingerprint hashes the names, sizes and contents of the files LoadDir
// reads, so an unchanged directory (or one where only test files changed)
// is not parsed again on every tick. It reads them as LoadDir does
// (trust.ReadPolicyFiles): a file LoadDir refuses unread (a symlink out of
// the directory, a file over the size limit) enters the fingerprint by
// its problem, never by what it points to, so its target is never read
// and the same refusal is not parsed again.
func fingerprint(dir string) (string, error) {
	files, problems, err := trust.ReadPolicyFiles(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(files[f]))
		h.Write(files[f])
	}
	for _, p := range problems {
		fmt.Fprintf(h, "problem\x00%s\x00", p.String())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
