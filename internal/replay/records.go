package replay

import (
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

// sweepRecords drops every record expired at at (Unix nanoseconds).
// Memory keeps Records' values in m.records, apart from Claim's keys; each
// Put sweeps first, so expired values never linger, and recordBytes counts
// what they hold.
func (m *Memory) sweepRecords(at int64) {
	m.records.sweep(at, func(v []byte) { m.recordBytes -= len(v) })
}

// addRecord keeps a copy of value under k until expiry.
func (m *Memory) addRecord(k hashedKey, value []byte, expiry time.Time) {
	m.records.add(k, append([]byte{}, value...), unixNano(expiry))
	m.recordBytes += len(value)
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
	at := unixNano(now)
	m.sweepRecords(at)
	k := sha256.Sum256([]byte(key))
	if _, ok := m.records.live(k, at); ok {
		return false, nil
	}
	if err := m.roomForRecord(len(value)); err != nil {
		return false, err
	}
	m.addRecord(k, value, expiry)
	return true, nil
}

// roomForRecord refuses a new record of n bytes past the store's bounds.
func (m *Memory) roomForRecord(n int) error {
	if m.records.len() >= m.max || m.recordBytes+n > m.maxRecordBytes {
		return fmt.Errorf("record put: %w (%d live records, %d bytes)", ErrRecordsFull, m.records.len(), m.recordBytes)
	}
	return nil
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
	v, ok := m.records.live(sha256.Sum256([]byte(key)), unixNano(m.now()))
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, v...), true, nil
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
	k := sha256.Sum256([]byte(key))
	if _, ok := m.records.live(k, unixNano(m.now())); !ok {
		return false, nil
	}
	// A replacement is allowed past the byte bound: it completes what a
	// Put already admitted (a release's outcome), and values are small.
	old, _ := m.records.replace(k, append([]byte{}, value...))
	m.recordBytes += len(value) - len(old)
	return true, nil
}

// Delete implements Records.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("record delete: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.records.remove(sha256.Sum256([]byte(key))); ok {
		m.recordBytes -= len(v)
	}
	return nil
}

// RecordLen returns the number of records held, expired ones not yet swept
// included.
func (m *Memory) RecordLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.records.len()
}
