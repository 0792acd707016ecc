package replay

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// Records keeps small values until they expire: the state besides used
// token ids that replicas must share, such as what release needs of each
// grant, a revocation list or a short lock. Like Store, keys are kept as
// their SHA-256, so no key text reaches the backend, and every error means
// the store could not answer: callers fail closed.
type Records interface {
	// Put stores value under key until expiry unless key holds a live
	// value; then it returns false and changes nothing. Of replicas racing
	// to Put one key, exactly one wins.
	Put(ctx context.Context, key string, value []byte, expiry time.Time) (bool, error)
	// Get returns key's live value; ok is false when there is none.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Replace overwrites key's live value and keeps its expiry; it returns
	// false, changing nothing, when key holds no live value.
	Replace(ctx context.Context, key string, value []byte) (bool, error)
	// Delete forgets key. Deleting a key that holds nothing is not an
	// error.
	Delete(ctx context.Context, key string) error
}

// MaxRecordBytes bounds one value: records describe a grant, they are not
// a place to keep data.
const MaxRecordBytes = 16 << 10

func checkRecordKey(op, key string) error {
	if key == "" {
		return fmt.Errorf("record %s: empty key", op)
	}
	return nil
}

func checkRecordValue(op string, value []byte) error {
	if len(value) > MaxRecordBytes {
		return fmt.Errorf("record %s: value of %d bytes is over the %d byte limit", op, len(value), MaxRecordBytes)
	}
	return nil
}

// checkPut refuses what no store can honour, as checkClaim does for Claim.
func checkPut(key string, value []byte, expiry, now time.Time) error {
	if err := checkRecordKey("put", key); err != nil {
		return err
	}
	if err := checkRecordValue("put", value); err != nil {
		return err
	}
	if !expiry.After(now) {
		return fmt.Errorf("record put: expiry %s is not in the future", expiry.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// ErrRecordsFull is ErrFull for Records: the values it keeps are at their
// bound. errors.Is(err, ErrFull) holds for it too.
var ErrRecordsFull = fmt.Errorf("records: %w", ErrFull)

// table is Memory's Records: values by hashed key with an expiry heap, so
// expired values are dropped oldest first on each Put and never linger.
type table struct {
	entries map[[sha256.Size]byte]*entry
	queue   expiryQueue
	bytes   int // the values' total length, which maxRecordBytes bounds
}

func newTable() table { return table{entries: map[[sha256.Size]byte]*entry{}} }

func (t *table) sweep(now time.Time) {
	for len(t.queue) > 0 && !t.queue[0].expiry.After(now) {
		t.remove(t.queue[0])
	}
}

func (t *table) remove(e *entry) {
	heap.Remove(&t.queue, e.index)
	delete(t.entries, e.key)
	t.bytes -= len(e.value)
}

// live returns key's entry unless it is missing or expired.
func (t *table) live(k [sha256.Size]byte, now time.Time) *entry {
	e, ok := t.entries[k]
	if !ok || !e.expiry.After(now) {
		return nil
	}
	return e
}

// Put implements Records. A full store refuses new keys with ErrFull
// rather than evict a live one, as Claim does.
func (m *Memory) Put(ctx context.Context, key string, value []byte, expiry time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("record put: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if err := checkPut(key, value, expiry, now); err != nil {
		return false, err
	}
	t := &m.records
	t.sweep(now)
	k := sha256.Sum256([]byte(key))
	if t.live(k, now) != nil {
		return false, nil
	}
	if err := m.roomForRecord(len(value)); err != nil {
		return false, err
	}
	t.add(k, value, expiry)
	return true, nil
}

// roomForRecord refuses a new record of n bytes past the store's bounds.
func (m *Memory) roomForRecord(n int) error {
	t := &m.records
	if len(t.entries) >= m.max || t.bytes+n > m.maxRecordBytes {
		return fmt.Errorf("record put: %w (%d live records, %d bytes)", ErrRecordsFull, len(t.entries), t.bytes)
	}
	return nil
}

func (t *table) add(k [sha256.Size]byte, value []byte, expiry time.Time) {
	e := &entry{key: k, expiry: expiry, value: append([]byte{}, value...)}
	t.entries[k] = e
	t.bytes += len(value)
	heap.Push(&t.queue, e)
}

// Get implements Records.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("record get: %w", err)
	}
	if err := checkRecordKey("get", key); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.records.live(sha256.Sum256([]byte(key)), m.now())
	if e == nil {
		return nil, false, nil
	}
	return append([]byte{}, e.value...), true, nil
}

// Replace implements Records.
func (m *Memory) Replace(ctx context.Context, key string, value []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("record replace: %w", err)
	}
	if err := errors.Join(checkRecordKey("replace", key), checkRecordValue("replace", value)); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.records.live(sha256.Sum256([]byte(key)), m.now())
	if e == nil {
		return false, nil
	}
	// A replacement is allowed past the byte bound: it completes what a
	// Put already admitted (a release's outcome), and values are small.
	m.records.bytes += len(value) - len(e.value)
	e.value = append([]byte{}, value...)
	return true, nil
}

// Delete implements Records.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("record delete: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &m.records
	k := sha256.Sum256([]byte(key))
	if e, ok := t.entries[k]; ok {
		t.remove(e)
	}
	return nil
}

// RecordLen returns the number of records held, expired ones not yet swept
// included.
func (m *Memory) RecordLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records.entries)
}
