package client

import "time"

// backoff computes reconnect delays: exponential from min to max, with
// "equal jitter" (a random point in the upper half) so that clients dropped
// together spread out without ever retrying immediately.
type backoff struct {
	min, max time.Duration
}

// delay returns the wait before the given attempt (0 for the first), with
// r in [0, 1) choosing the point in the jitter range.
func (b backoff) delay(attempt int, r float64) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		if d > b.max/2 {
			d = b.max
		} else {
			d *= 2
		}
	}
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}
