package fanout

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
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

// storeMax raises a position v to x if x is larger.
func storeMax(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}
