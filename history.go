package fanout

import "github.com/fanout-go/fanout/internal/wire"

// event is one sequenced event, encoded once to the bytes every connection
// sends. wire is never modified after it is stored, so writers may read it
// without copying the event.
type event struct {
	seq  uint64
	wire []byte
}

// history is the session's log: gap-free sequence numbers and a ring holding
// the most recent `window` encoded events. The ring grows with use, doubling
// up to the window, so an idle session holds almost nothing; it only wraps
// once it is full. Callers hold the session lock.
type history struct {
	ring   []event // len(ring) < window only while no event was dropped
	window int
	head   uint64 // seq of the newest event; 0 before the first
}

func newHistory(window int) history { return history{window: window} }

// floor is the newest seq no longer retained: events floor+1..head are in the
// ring. A position p can be served iff floor <= p <= head.
func (h *history) floor() uint64 {
	if n := uint64(h.window); h.head > n {
		return h.head - n
	}
	return 0
}

// oldest is the oldest retained seq, or 0 when nothing is retained.
func (h *history) oldest() uint64 {
	if h.head == 0 {
		return 0
	}
	return h.floor() + 1
}

func (h *history) canServe(after uint64) bool { return after >= h.floor() && after <= h.head }

func (h *history) append(wire []byte) uint64 {
	h.head++
	if len(h.ring) < h.window {
		// Not yet full: seqs 1..head sit at 0..head-1, as they will
		// in the full ring.
		if len(h.ring) == cap(h.ring) {
			grown := make([]event, len(h.ring), min(max(2*cap(h.ring), 4), h.window))
			copy(grown, h.ring)
			h.ring = grown
		}
		h.ring = append(h.ring, event{seq: h.head, wire: wire})
		return h.head
	}
	h.ring[(h.head-1)%uint64(h.window)] = event{seq: h.head, wire: wire}
	return h.head
}

// at returns the event with seq s; floor < s <= head.
func (h *history) at(s uint64) *event { return &h.ring[(s-1)%uint64(h.window)] }

// commitLocked appends one event. The event is encoded here, once; writers
// send these bytes as they are. s.mu is held; the caller wakes the pacer
// after unlocking.
func (s *Session) commitLocked(data []byte, from, id string) uint64 {
	b := make([]byte, 0, len(data)+len(from)+len(id)+64)
	seq := s.window.append(wire.AppendEvent(b, s.window.head+1, data, from, id))
	s.head.Store(seq)
	s.stamp(seq)
	s.notePublished(id != "")
	return seq
}

// fill appends the encoded events after seq `after`, up to seq upto, to
// buf, one per line, until buf holds maxBatch bytes. It returns the last seq
// added, how many were added and whether more were due than fitted. ok is
// false when `after` has fallen out of the history window.
func (s *Session) fill(after, upto uint64, buf []byte) (_ []byte, last uint64, n int, more bool, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := &s.window
	if after < h.floor() {
		return buf, after, 0, false, false
	}
	last = after
	upto = min(upto, h.head)
	for last < upto && (n == 0 || len(buf) < maxBatch) {
		last++
		buf = append(buf, h.at(last).wire...)
		buf = append(buf, '\n')
		n++
	}
	return buf, last, n, last < upto, true
}
