package fanout

import (
	"errors"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-go/fanout/internal/wire"
)

const (
	// maxBatch is the size past which a writer stops adding events to a
	// frame. A frame holds at least one event whatever its size.
	maxBatch = 32 << 10
	// defaultLinger is how long a writer goroutine stays after its last
	// write before the pacer retires it. Idle connections then hold no
	// writer goroutine; busy ones keep theirs.
	defaultLinger = 2 * time.Second
)

// commitLocked appends one event. The event is encoded here, once; writers
// send these bytes as they are. s.mu is held; the caller pokes the pacer
// after unlocking.
func (s *Session) commitLocked(data []byte, from, id string) uint64 {
	b := make([]byte, 0, len(data)+len(from)+len(id)+64)
	seq := s.log.append(wire.AppendEvent(b, s.log.head+1, data, from, id))
	s.head.Store(seq)
	s.published.Add(1)
	return seq
}

// fill appends the encoded events after seq `after`, up to seq upto, to
// buf, one per line, until buf holds maxBatch bytes. It returns the last seq
// added, how many were added and whether more were due than fitted. ok is
// false when `after` has fallen out of the history window.
func (s *Session) fill(after, upto uint64, buf []byte) (_ []byte, last uint64, n int, more bool, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := &s.log
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

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch+4096); return &b }}

// kick makes sure a writer goroutine is running for c.
func (c *Conn) kick() {
	if c.active.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished || !c.active.CompareAndSwap(false, true) {
		return
	}
	c.writers.Add(1)
	go c.writeLoop()
}

// notify tells c's writer, running or not, that there is something to do.
func (c *Conn) notify() {
	c.signal()
	c.kick()
}

// signal wakes c's writer if one is waiting.
func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writerWork reports whether the writer goroutine has work besides events,
// which the pacer's rounds send.
func (c *Conn) writerWork() bool {
	return c.handoff.Load() || c.pingDue.Load() || c.work.Load()
}

// pending reports whether the connection has anything to send.
func (c *Conn) pending() bool {
	return c.writerWork() || c.sent.Load() < c.s.head.Load()
}

// writeLoop is the connection's writer goroutine. It sends control messages
// and, with them, the events pending from the connection's cursor in the
// shared history, packed into one frame; it finishes frames the pacer's
// direct writes left half written; and it closes the connection. It writes
// only while it holds c.sock, and at most one runs per connection. Between
// writes it waits to be woken; it exits when the pacer retires it after
// lingering idle, and for good once the connection is closed. Every way out
// lets go of c.sock, which the WebSocket library's own writes need.
func (c *Conn) writeLoop() {
	defer c.writers.Done()
	s := c.s
	c.lastWrite.Store(s.now())
	for {
		if c.handoff.Swap(false) {
			// c.sock came with the rest of a frame the socket did not take.
			err := c.write(c.carry)
			n := c.carryEvents
			putBatch(c.carryBuf, *c.carryBuf)
			c.carry, c.carryBuf, c.carryEvents = nil, nil, 0
			if err != nil {
				c.writeFailed(err)
				return
			}
			s.delivered.Add(uint64(n))
		} else if !c.sock.TryLock() {
			// The pacer is writing; it wakes us when it is done, if we
			// have work.
			if !c.park() {
				return
			}
			continue
		}

		c.mu.Lock()
		ctrl, closing, ce, pong := c.ctrl, c.closing, c.closeErr, c.pong
		upto := uint64(math.MaxUint64)
		if closing {
			upto = c.flushTo
		}
		c.ctrl, c.pong = nil, nil
		c.work.Store(closing)
		c.mu.Unlock()

		if pong != nil {
			if err := c.write(wire.PongFrame(pong)); err != nil {
				c.writeFailed(err)
				return
			}
		}
		bp := batchPool.Get().(*[]byte)
		buf := (*bp)[:wire.FrameHeadroom]
		for _, m := range ctrl {
			buf = append(buf, m...)
			buf = append(buf, '\n')
		}
		if c.pingDue.Swap(false) {
			buf = append(buf, wire.Ping...)
			buf = append(buf, '\n')
		}
		buf, last, n, more, ok := s.fill(c.sent.Load(), upto, buf)
		if !ok {
			putBatch(bp, buf)
			c.noteClose(CloseSlowConsumer, "fell behind the history window") // before the pacer can take the socket
			c.sock.Unlock()
			c.slowConsumer("fell behind the history window")
			return
		}
		if len(buf) > wire.FrameHeadroom {
			if n > 0 {
				c.sent.Store(last)
			}
			err := c.write(wire.TextFrame(buf))
			putBatch(bp, buf)
			if err != nil {
				c.writeFailed(err)
				return
			}
			s.delivered.Add(uint64(n))
		} else {
			putBatch(bp, buf)
			if closing { // everything due before the close was sent
				c.sock.Unlock()
				c.closeHandshake(ce)
				return
			}
		}
		c.sock.Unlock()
		if more || closing {
			continue
		}
		// Events committed since fill looked wait for the pacer's next
		// round.
		if !c.park() {
			return
		}
	}
}

// park waits to be woken. It returns false when the writer must exit: the
// connection is over, or the pacer retired the writer and nothing came in
// since.
func (c *Conn) park() bool {
	<-c.wake
	if c.ctx.Err() != nil {
		return false
	}
	if c.retire.Swap(false) {
		c.active.Store(false)
		// Whoever queued work after our last look either sees
		// active==false and starts a writer, or is seen here.
		if !c.pending() || !c.active.CompareAndSwap(false, true) {
			return false
		}
	}
	return true
}

// writeFailed ends the connection after a failed write; the caller holds
// c.sock, which is let go once the connection is marked closing, so the
// pacer, which may take it next, leaves the connection alone. The write may
// have stopped inside a frame, so no close frame can follow it: the TCP
// connection is dropped. A write cut for taking too long is recorded as a
// slow consumer (4001); the client sees its connection end and resumes.
func (c *Conn) writeFailed(err error) {
	code, reason := CloseAbnormal, "write failed"
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.s.slowCloses.Add(1)
		code, reason = CloseSlowConsumer, "write timed out"
	}
	c.noteClose(code, reason)
	c.sock.Unlock()
	c.drop(code, reason)
}

func putBatch(bp *[]byte, buf []byte) {
	if cap(buf) > 1<<20 {
		return // a rare huge frame; let it go rather than pin it in the pool
	}
	*bp = buf[:0]
	batchPool.Put(bp)
}

// write sends one frame in one blocking write to the socket; the caller
// holds c.sock. Frames are made here (wire.TextFrame) rather than through
// the WebSocket library: the same bytes in one system call, without the
// library's message state, locks and copy into its buffer. The library
// still reads, and writes the close frames of its own handshakes, through
// a writer that takes c.sock too (socketWriter), so frames never mix.
//
// The write timeout is enforced by the pacer's sweep, which fails a write
// that has run too long by moving the socket's deadline into the past: no
// deadline to set and clear around every write.
func (c *Conn) write(frame []byte) error {
	t := c.s.now()
	c.lastWrite.Store(t)
	c.writeStart.Store(t)
	defer c.writeStart.Store(0)
	for {
		n, err := c.netConn.Write(frame)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || c.s.now()-t >= int64(c.s.cfg.writeTimeout) {
			return err
		}
		// The sweep's deadline was meant for an earlier write that ended
		// just before it was set: lift it and go on.
		_ = c.netConn.SetWriteDeadline(time.Time{})
		frame = frame[n:]
	}
}

// slowConsumer closes a connection that cannot keep up, with a close frame;
// the caller does not hold c.sock. Nothing is skipped:
// the client reconnects and resumes from its last seq, or learns that its
// position is gone.
func (c *Conn) slowConsumer(reason string) {
	c.s.slowCloses.Add(1)
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
