package fanout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/fanout-go/fanout/internal/wire"
)

// maxBatch is the size past which a writer stops adding events to a frame.
// A frame holds at least one event whatever its size.
const maxBatch = 32 << 10

// commitLocked appends one event and wakes every writer. The event is
// encoded here, once; writers send these bytes as they are. s.mu is held.
func (s *Session) commitLocked(data []byte, from, id string) uint64 {
	b := make([]byte, 0, len(data)+len(from)+len(id)+64)
	seq := s.log.append(wire.AppendEvent(b, s.log.head+1, data, from, id))
	close(s.tail)
	s.tail = make(chan struct{})
	s.published.Add(1)
	return seq
}

// fill appends the encoded events after seq `after` to buf, one per line,
// until buf holds maxBatch bytes. It returns the last seq added, how many
// were added, and the channel that is closed on the next append. ok is
// false when `after` has fallen out of the history window.
func (s *Session) fill(after uint64, buf []byte) (_ []byte, last uint64, n int, tail <-chan struct{}, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := &s.log
	if after < h.floor() {
		return buf, after, 0, nil, false
	}
	last = after
	for last < h.head && (n == 0 || len(buf) < maxBatch) {
		last++
		buf = append(buf, h.at(last).wire...)
		buf = append(buf, '\n')
		n++
	}
	return buf, last, n, s.tail, true
}

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch+4096); return &b }}

// writeLoop is the connection's writer: it drains control messages, then
// sends events from the connection's cursor in the shared history, packing
// whatever is pending into one frame, and pings on schedule. It is the only
// goroutine that writes to the socket.
func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	s := c.s
	hb := heartbeat{interval: s.cfg.heartbeat, timeout: s.cfg.heartbeatTimeout}
	timer := time.NewTimer(hb.interval)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ctrl, closing, ce := c.ctrl, c.closing, c.closeErr
		c.ctrl = nil
		c.mu.Unlock()

		bp := batchPool.Get().(*[]byte)
		buf := (*bp)[:0]
		for _, m := range ctrl {
			buf = append(buf, m...)
			buf = append(buf, '\n')
		}
		if hb.due {
			buf = append(buf, wire.Ping...)
			buf = append(buf, '\n')
			hb.due = false
		}
		if closing && ce.Code != CloseGoingAway {
			// Say why before closing, but send no more events.
			_ = c.write(buf)
			putBatch(bp, buf)
			c.closeHandshake(ce)
			return
		}
		buf, last, n, tail, ok := s.fill(c.sent.Load(), buf)
		if !ok {
			putBatch(bp, buf)
			c.slowConsumer("fell behind the history window")
			return
		}
		if len(buf) > 0 {
			if n > 0 {
				c.sent.Store(last)
			}
			err := c.write(buf)
			putBatch(bp, buf)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					c.slowConsumer("write timed out")
				} else {
					c.drop(CloseAbnormal, "write failed")
				}
				return
			}
			s.delivered.Add(uint64(n))
			continue
		}
		putBatch(bp, buf)
		if closing { // going away and everything pending was sent
			c.closeHandshake(ce)
			return
		}
		select {
		case <-tail:
		case <-c.wake:
		case <-timer.C:
			if !hb.tick(timer, c.lastHeard.Load()) {
				c.noteClose(CloseHeartbeatTimeout, "heartbeat timeout")
				c.closeHandshake(&CloseError{Code: CloseHeartbeatTimeout, Reason: "heartbeat timeout"})
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

func putBatch(bp *[]byte, buf []byte) {
	if cap(buf) > 1<<20 {
		return // a rare huge frame; let it go rather than pin it in the pool
	}
	*bp = buf[:0]
	batchPool.Put(bp)
}

// write sends one frame, bounded by the write timeout.
func (c *Conn) write(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.writeTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, buf)
}

// slowConsumer closes a connection that cannot keep up. Nothing is skipped:
// the client reconnects and resumes from its last seq, or learns that its
// position is gone.
func (c *Conn) slowConsumer(reason string) {
	c.s.slowCloses.Add(1)
	c.noteClose(CloseSlowConsumer, reason)
	c.closeHandshake(&CloseError{Code: CloseSlowConsumer, Reason: reason})
}

// storeMax raises v to x if x is larger.
func storeMax(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}
