package fanout

import "time"

// WithLinger shortens how long idle writers linger, for tests.
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }
