package client

import "time"

// The server takes a connection's publishes through a token bucket (by
// default 50 a second, burst 100), answers those over it with rate_limited,
// and closes the connection with 1008, for good, after 100 such refusals in
// a row. So the client never fires its whole backlog at once: at most a
// window of publishes is in flight on a connection, the rest wait in order,
// and a rate_limited answer shrinks the window to one publish and pauses it
// with a growing backoff. After a burst of refusals the client thus sends
// one probe per pause, and the pauses grow to rateBackoff.max, so only a
// server that grants no token for minutes could count 100 refusals in a row,
// and never 100 within the server's one-second window.

// rateBackoff is the pause after a rate_limited answer: 50–100 ms after
// the first, doubling with each further pause without an accepted publish
// in between, up to 1–2 s.
var rateBackoff = backoff{min: 100 * time.Millisecond, max: 2 * time.Second}

// sendWindow paces the publishes of one connection. The Client's mutex
// guards it; connect resets it, since the server's bucket is per connection.
type sendWindow struct {
	max      int       // WithMaxInFlight
	size     int       // how many may be in flight now: max, or fewer after a refusal
	inflight int       // sent on this connection and not yet answered
	round    uint64    // bumped by each pause; publishes remember the round they were sent in
	pauses   int       // pauses since the server last accepted a publish: the backoff attempt
	until    time.Time // no publish is sent before this
}

func (w *sendWindow) reset(max int) { *w = sendWindow{max: max, size: max} }

// wait reports whether a publish may be sent at now. When only the pause
// stands in the way it also returns when the pause ends; when the window is
// full, an answer will reopen it.
func (w *sendWindow) wait(now time.Time) (ok bool, until time.Time) {
	switch {
	case w.inflight >= w.size:
		return false, time.Time{}
	case now.Before(w.until):
		return false, w.until
	}
	return true, time.Time{}
}

// sent counts a publish going out and returns the round it belongs to.
func (w *sendWindow) sent() uint64 {
	w.inflight++
	return w.round
}

// accepted counts an answer the server gave after its rate limiter let the
// publish through (an ack, or a final refusal): the window grows back by one
// per answer, doubling each round trip, and the backoff starts over.
func (w *sendWindow) accepted() {
	w.inflight--
	w.pauses = 0
	if w.size < w.max {
		w.size++
	}
}

// refused counts a rate_limited answer to a publish sent in round, with r in
// [0, 1) for the jitter. Only the first refusal of a round pauses: the
// others answer publishes that were already on their way.
func (w *sendWindow) refused(round uint64, now time.Time, r float64) {
	w.inflight--
	if round != w.round {
		return
	}
	w.round++
	w.size = 1
	w.until = now.Add(rateBackoff.delay(w.pauses, r))
	w.pauses++
}

// forget frees the slot of a publish that will not be answered to anyone:
// its caller gave up.
func (w *sendWindow) forget() { w.inflight-- }
