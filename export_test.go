package fanout

import "time"

// WithLinger shortens how long idle writers linger, for tests.
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// WithMinPart sets the fewest connections a write round gives a goroutine
// of its own, for tests.
func WithMinPart(n int) Option { return func(c *config) { c.minPart = n } }
