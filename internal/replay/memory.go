package replay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultMaxEntries bounds a Memory store. At about 120 bytes an entry it is
// some 120 MB, and a million live token ids is far past one broker's load:
// reaching it means a flood, which should be refused, not absorbed.
const DefaultMaxEntries = 1_000_000

// DefaultMaxRecordBytes bounds the values a Memory store keeps for Records.
// A grant kept for release is about 1 KiB (1.16 KiB of heap with its key
// and expiry), so it holds some 250,000 live grants; a broker past that
// wants replay.store: redis.
const DefaultMaxRecordBytes = 256 << 20

// ErrFull is returned by Memory.Claim when the store holds its maximum of
// live entries. Live entries are never evicted to make room: forgetting one
// would let its token be replayed. The error is a *FullError, which says
// when the store next has room.
var ErrFull = errors.New("replay store full")

// FullError is ErrFull with what a caller needs to answer it: how many
// entries are live and when the oldest of them expires, which is the
// earliest a new claim can succeed (unless a release makes room sooner).
type FullError struct {
	Live   int
	RoomAt time.Time
}

func (e *FullError) Error() string {
	return fmt.Sprintf("%v (%d live entries; the oldest expires at %s)", ErrFull, e.Live, e.RoomAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrFull) hold.
func (e *FullError) Is(target error) bool { return target == ErrFull }

// checkClaim refuses arguments no store can honour: an empty key, or an
// expiry that has already passed (recording it would let the token be
// replayed at once).
func checkClaim(key string, expiry, now time.Time) error {
	if key == "" {
		return errors.New("replay claim: empty key")
	}
	if !expiry.After(now) {
		return fmt.Errorf("replay claim: expiry %s is not in the future", expiry.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// Memory is a Store held in this process: correct for a single replica, and
// forgotten on restart (tokens live minutes, so a restart reopens a window
// only for tokens issued just before it). It starts no goroutine: expired
// entries are dropped on each Claim, oldest first, so memory holds only live
// entries.
type Memory struct {
	mu  sync.Mutex
	now func() time.Time
	max int
	// maxRecordBytes bounds recordBytes.
	maxRecordBytes int
	claims         expiring[struct{}]
	records        expiring[[]byte] // Records' values, apart from Claim's keys
	recordBytes    int              // the values' total length
}

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithClock sets the clock that decides expiry (default time.Now).
func WithClock(now func() time.Time) MemoryOption { return func(m *Memory) { m.now = now } }

// WithMaxEntries sets how many live entries the store holds before Claim
// fails with ErrFull (default DefaultMaxEntries).
func WithMaxEntries(n int) MemoryOption { return func(m *Memory) { m.max = n } }

// WithMaxRecordBytes sets how many bytes of Records values the store holds
// before Put fails with ErrFull (default DefaultMaxRecordBytes).
func WithMaxRecordBytes(n int) MemoryOption { return func(m *Memory) { m.maxRecordBytes = n } }

// entryBytes is about what a live entry costs the heap: its hashed key in
// the map and in the expiry heap, and its expiry in both (119 bytes
// measured over 100,000 claims).
const entryBytes = 120

// ForMemoryLimit bounds a Memory store to the process's memory limit
// (GOMEMLIMIT, which `ferry serve` sets from the container's) when that is
// tighter than the defaults: a quarter of it for grant records' values and
// a sixteenth for live entries. With the collector's headroom beside them
// that is well under the limit, so a store that fills up refuses new
// grants (ErrFull, a 503 with Retry-After) instead of growing until the
// process is killed and forgets every token it has seen. No limit (0 or
// less) and a limit the defaults already fit in leave the defaults.
func ForMemoryLimit(limit int64) []MemoryOption {
	if limit <= 0 {
		return nil
	}
	var opts []MemoryOption
	if records := limit / 4; records < DefaultMaxRecordBytes {
		opts = append(opts, WithMaxRecordBytes(int(records)))
	}
	if entries := limit / 16 / entryBytes; entries < DefaultMaxEntries {
		opts = append(opts, WithMaxEntries(int(entries)))
	}
	return opts
}

// Bounds returns how many live entries and how many bytes of record values
// the store holds at most.
func (m *Memory) Bounds() (entries, recordBytes int) { return m.max, m.maxRecordBytes }

// NewMemory returns an empty in-process store.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, max: DefaultMaxEntries, maxRecordBytes: DefaultMaxRecordBytes,
		claims: newExpiring[struct{}](), records: newExpiring[[]byte]()}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Claim implements Store. Keys are kept as their SHA-256, so a long key
// costs no more memory than a short one.
func (m *Memory) Claim(ctx context.Context, key string, expiry time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("replay claim: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if err := checkClaim(key, expiry, now); err != nil {
		return false, err
	}
	at := unixNano(now)
	m.claims.sweep(at, nil)
	k := sha256.Sum256([]byte(key))
	if _, ok := m.claims.live(k, at); ok {
		return false, nil
	}
	if err := m.roomForClaim(now); err != nil {
		return false, err
	}
	m.claims.add(k, struct{}{}, unixNano(expiry))
	return true, nil
}

// roomForClaim refuses a new claim once the store holds its maximum of
// live entries. Refused, not evicted: see ErrFull. It is called after a
// sweep, which left only live entries, so the oldest is the next to make
// room.
func (m *Memory) roomForClaim(now time.Time) error {
	if m.claims.len() < m.max {
		return nil
	}
	room := now
	if at, ok := m.claims.oldest(); ok {
		room = time.Unix(0, at)
	}
	return fmt.Errorf("replay claim: %w", &FullError{Live: m.claims.len(), RoomAt: room})
}

// Release implements Store.
func (m *Memory) Release(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("replay release: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims.remove(sha256.Sum256([]byte(key)))
	return nil
}

// Len returns the number of entries held, expired ones not yet swept
// included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claims.len()
}
