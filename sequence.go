package fanout

import (
	"crypto/rand"
	"encoding/hex"
)

// newEpoch names one incarnation of a session's history. A seq is only
// meaningful with its epoch: a client holding a position from another epoch
// (say, from before a restart of an in-memory session) is told resumed:false
// instead of being handed events that merely share numbers.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// event is one sequenced event, encoded once to the bytes every connection
// sends. wire is never modified after it is stored, so writers may read it
// without copying the event.
type event struct {
	seq  uint64
	wire []byte
}

// history is the session's log: gap-free sequence numbers and a ring holding
// the most recent len(ring) encoded events. Callers hold the session lock.
type history struct {
	ring []event
	head uint64 // seq of the newest event; 0 before the first
}

func newHistory(window int) history { return history{ring: make([]event, window)} }

// floor is the newest seq no longer retained: events floor+1..head are in the
// ring. A position p can be served iff floor <= p <= head.
func (h *history) floor() uint64 {
	if n := uint64(len(h.ring)); h.head > n {
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
	h.ring[(h.head-1)%uint64(len(h.ring))] = event{seq: h.head, wire: wire}
	return h.head
}

// at returns the event with seq s; floor < s <= head.
func (h *history) at(s uint64) *event { return &h.ring[(s-1)%uint64(len(h.ring))] }
