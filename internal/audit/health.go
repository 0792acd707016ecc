package audit

import (
	"errors"
	"fmt"
)

// Healthy returns nil while the Log takes writes, or why it does not: it
// was closed, or a failed write or fsync left it refusing every record (see
// Log). Such a Log stays broken until the broker restarts and Open repairs
// the file's tail, so a replica reporting this should be restarted.
//
// A write that failed and was undone (a full disk, say) does not break the
// Log: the next one may succeed, and Healthy still returns nil.
func (l *Log) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return errors.New("audit log is closed")
	case l.broken != nil:
		return fmt.Errorf("audit log refuses writes after a failed write: %w", l.broken)
	}
	return nil
}
