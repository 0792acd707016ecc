// Package fakeclock is a clock that tests move by hand, so that expiry,
// refill and refresh are tested without sleeping. It is safe for
// concurrent use.
package fakeclock

import (
	"sync"
	"time"
)

// Clock reads the time it was set to, until Advance moves it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// At returns a Clock reading t.
func At(t time.Time) *Clock { return &Clock{t: t} }

// Now implements the func() time.Time the code under test takes.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
