package main

import (
	"bytes"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-go/fanout/client"
)

// span is a range of seqs, both ends included.
type span struct{ from, to uint64 }

// recorder checks one client's stream as it arrives: every event must be
// the one after the last, except right after an explicit reset. It keeps
// counters, not the events, so a thousand clients cost little; the content
// is checked through a sum of per-event hashes compared with the
// observer's at the end.
type recorder struct {
	r *run

	mu      sync.Mutex
	last    uint64
	sum     uint64 // Σ eventHash of the events processed
	events  uint64
	dups    uint64              // an event at or below the last one, not a late one
	loss    uint64              // seqs skipped without a reset (net of late arrivals)
	reorder uint64              // seqs that arrived after a later one
	missing map[uint64]struct{} // seqs skipped without a reset, nil while none
	resets  []span              // seqs skipped by an explicit reset
	pos     atomic.Uint64       // last, for polling without the lock
	stall   atomic.Int64        // nanoseconds the handler should stall before the next event

	// keep is set for the observer: it stores every event's hash and key.
	keep   bool
	hashes []uint64
	keys   []string
}

func (rc *recorder) handle(ev client.Event) {
	if d := rc.stall.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	now := time.Now()
	h := eventHash(ev.Seq, ev.Data)
	rc.mu.Lock()
	switch {
	case ev.Seq == rc.last+1:
	case ev.Seq <= rc.last:
		if _, late := rc.missing[ev.Seq]; !late {
			rc.dups++
			rc.mu.Unlock()
			return
		}
		delete(rc.missing, ev.Seq)
		rc.reorder++
		rc.loss--
	default:
		if rc.missing == nil {
			rc.missing = make(map[uint64]struct{})
		}
		for s := rc.last + 1; s < ev.Seq && len(rc.missing) < 1<<16; s++ {
			rc.missing[s] = struct{}{}
		}
		rc.loss += ev.Seq - rc.last - 1
	}
	rc.sum += h
	rc.events++
	if ev.Seq > rc.last {
		rc.last = ev.Seq
		rc.pos.Store(ev.Seq)
	}
	if rc.keep {
		for uint64(len(rc.hashes)) < ev.Seq {
			rc.hashes = append(rc.hashes, 0)
			rc.keys = append(rc.keys, "")
		}
		rc.hashes[ev.Seq-1] = h
		rc.keys[ev.Seq-1] = payloadKey(ev.Data)
	}
	rc.mu.Unlock()
	if !rc.keep {
		rc.r.delivered.Add(1)
		if t, ok := payloadTime(ev.Data); ok {
			if h := rc.r.latency.Load(); t.UnixNano() >= h.since.Load() {
				h.add(now.Sub(t))
			}
		}
	}
}

// reset is the client's WithOnReset: the events up to head are skipped, and
// said so.
func (rc *recorder) reset(head uint64, _ string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.resets = append(rc.resets, span{rc.last + 1, head})
	if head > rc.last {
		rc.last = head
		rc.pos.Store(head)
	}
}

// newEpoch starts the recorder over, for a session with a new history.
func (rc *recorder) newEpoch() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.last, rc.sum, rc.events, rc.dups, rc.loss, rc.reorder = 0, 0, 0, 0, 0, 0
	rc.missing, rc.resets, rc.hashes, rc.keys = nil, nil, nil, nil
	rc.pos.Store(0)
}

// snapshot is a recorder's figures at one moment.
type snapshot struct {
	last, sum, events, dups, loss, reorder uint64
	resets                                 []span
}

func (rc *recorder) snapshot() snapshot {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return snapshot{rc.last, rc.sum, rc.events, rc.dups, rc.loss, rc.reorder, append([]span(nil), rc.resets...)}
}

// eventHash names one event, its seq and its bytes.
func eventHash(seq uint64, data []byte) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(seq >> (8 * i))
	}
	_, _ = h.Write(b[:])
	_, _ = h.Write(data)
	return h.Sum64()
}

// Payloads look like {"p":"s3","n":42,"t":1700000000000000000,"pad":"..."}:
// the publisher, its count, and the time it was published.

func makePayload(pub string, n uint64, size int) []byte {
	b := make([]byte, 0, size+64)
	b = append(b, `{"p":"`...)
	b = append(b, pub...)
	b = append(b, `","n":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"pad":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// payloadKey returns "pub/n", which names one logical publish.
func payloadKey(data []byte) string {
	p := field(data, `"p":"`, '"')
	n := field(data, `"n":`, ',')
	if p == nil || n == nil {
		return ""
	}
	return string(p) + "/" + string(n)
}

func payloadTime(data []byte) (time.Time, bool) {
	t, err := strconv.ParseInt(string(field(data, `"t":`, ',')), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, t), true
}

func field(data []byte, prefix string, end byte) []byte {
	i := bytes.Index(data, []byte(prefix))
	if i < 0 {
		return nil
	}
	rest := data[i+len(prefix):]
	j := bytes.IndexByte(rest, end)
	if j < 0 {
		return nil
	}
	return rest[:j]
}
