package fanout

import "time"

// WithLinger shortens how long idle writers linger, for tests.
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// SetMinPart sets the fewest connections a write round gives a goroutine of
// its own, for tests, and returns the old value.
func SetMinPart(n int) int { old := minPart; minPart = n; return old }
