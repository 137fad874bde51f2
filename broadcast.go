package fanout

import (
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/fanout-go/fanout/internal/wire"
)

// The pacer's rounds. Sending in rounds is what makes fan-out cheap: a
// write costs about the same whether it carries one event or twenty, so
// the pacer (Session.pace) lets events that follow each other within the batch
// window gather, then goes once over every connection that is behind and
// writes it everything pending as one frame, with one non-blocking system
// call (Conn.offer). The frame is made once for all connections at the same
// position, which under a steady stream is nearly all of them. The pacer
// never waits on a socket: what a socket does not take at once is the
// connection's writer's to finish (Conn.runWriter), so a slow client never holds
// up the others. The pacer goes down the connections in the order they
// joined, the same every round, so no connection waits more than a round.

const (
	// maxBatch is the size past which no more events are added to a
	// frame. A frame holds at least one event whatever its size.
	maxBatch = 32 << 10
	// defaultLinger is how long a writer goroutine stays after its last
	// write before the pacer retires it. Idle connections then hold no
	// writer goroutine; busy ones keep theirs.
	defaultLinger = 2 * time.Second
)

// writeRound sends every connection that is behind the head what it is
// due. With more than one CPU the list is split between goroutines, one
// per CPU, each going down its part in order.
func (s *Session) writeRound() {
	s.noteRound()
	list := *s.connList.Load()
	head := s.head.Load()
	parts := min(runtime.GOMAXPROCS(0), len(list)/s.cfg.minPart)
	if parts <= 1 {
		writeDue(s, list, head)
		return
	}
	var wg sync.WaitGroup
	size := (len(list) + parts - 1) / parts
	for i := 0; i < len(list); i += size {
		part := list[i:min(i+size, len(list))]
		wg.Go(func() { writeDue(s, part, head) })
	}
	wg.Wait()
}

func writeDue(s *Session, list []*Conn, head uint64) {
	r := round{s: s}
	for _, c := range list {
		if c.sent.Load() < head {
			c.offer(&r)
		}
	}
	r.end()
}

// round is one pass of the pacer over the connections. Those at the same
// position, which under a steady stream is nearly all of them, get the same
// frame, made once per round.
type round struct {
	s     *Session
	bp    *[]byte // pooled buffer under frame; nil until the first frame
	after uint64  // the position frame was made for
	frame []byte  // the events after `after`, framed; nil if none
	last  uint64  // the seq of frame's last event
	n     int     // events in frame
	more  bool    // more were due than fitted
	ok    bool    // `after` was within the history window
}

// frameFor makes the round's frame for connections at position after,
// unless it has it. It reports false when after fell out of the history.
func (r *round) frameFor(after uint64) bool {
	if r.bp != nil && r.after == after {
		return r.ok
	}
	if r.bp == nil {
		r.bp = batchPool.Get().(*[]byte)
	}
	buf := (*r.bp)[:wire.FrameHeadroom]
	buf, r.last, r.n, r.more, r.ok = r.s.fill(after, math.MaxUint64, buf)
	*r.bp = buf
	r.after, r.frame = after, nil
	if r.ok && r.n > 0 {
		r.frame = wire.TextFrame(buf)
	}
	return r.ok
}

// end gives the round's buffer back.
func (r *round) end() {
	if r.bp != nil {
		putBatch(r.bp, *r.bp)
	}
}
