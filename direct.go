package fanout

import (
	"math"
	"net"
	"syscall"

	"github.com/fanout-go/fanout/internal/wire"
)

// Direct writes: in a round, the pacer writes each connection's pending
// events to its socket itself, with one non-blocking system call, instead
// of waking a goroutine per connection to do it. On a loaded core that is
// most of what fan-out costs besides the system calls: a goroutine switch
// per connection per round, and writers run in whatever order the scheduler
// picks, where the pacer goes down the list in the same order every round,
// so no connection waits more than one round.
//
// A connection's writer goroutine still does everything else: control
// messages (the welcome, acks, presence), closes, and the rest of a frame
// the socket did not take at once. Whoever writes holds c.busy, so frames
// never interleave; the pacer hands a partly written frame, and c.busy with
// it, to the writer, which finishes it with blocking writes under the write
// timeout. A slow client therefore never holds up the pacer.
//
// The WebSocket library writes to the socket on its own in two cases. Pongs
// to client pings are routed through the writer instead (queuePong), so a
// pong never lands inside a part-written frame. The close frame it sends
// when the client closes or breaks the protocol could, if it comes while a
// frame is half written to a full socket; the connection is ending then,
// and the client may see its end as abnormal (1006) rather than clean.

// directWriter is the state for writing to a socket without the runtime's
// poller, set up once per connection so a write allocates nothing. It is
// nil for sockets that are not plain file descriptors (TLS, in-memory
// pipes); their writers do all the writing.
type directWriter struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool // writes buf once, never waits
	buf []byte
	n   int
	err error
}

func newDirectWriter(nc net.Conn) *directWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	d := &directWriter{raw: raw}
	d.fn = func(fd uintptr) bool {
		d.n, d.err = syscall.Write(int(fd), d.buf)
		return true // one attempt; a full socket is the writer's business
	}
	return d
}

// write makes one non-blocking attempt to write b and returns how much of
// it the socket took. A full socket is not an error.
func (d *directWriter) write(b []byte) (int, error) {
	d.buf = b
	err := d.raw.Write(d.fn)
	d.buf = nil
	if err != nil {
		return 0, err
	}
	if d.n < 0 {
		d.n = 0
	}
	if d.err == syscall.EAGAIN || d.err == syscall.EINTR {
		return d.n, nil
	}
	return d.n, d.err
}

// writeDirect sends c's pending events from the pacer. It leaves the
// connection to its writer goroutine when the writer has work of its own
// (control messages first: the welcome precedes every event), when the
// connection is closing, or when it holds the socket; and it hands the
// writer whatever the socket did not take.
func (c *Conn) writeDirect() {
	if c.direct == nil || !c.busy.CompareAndSwap(false, true) {
		c.notify()
		return
	}
	c.mu.Lock()
	simple := len(c.ctrl) == 0 && !c.closing
	c.mu.Unlock()
	if !simple {
		c.release()
		return
	}
	s := c.s
	bp := batchPool.Get().(*[]byte)
	buf := (*bp)[:wire.FrameHeadroom]
	if c.pingDue.Swap(false) {
		buf = append(buf, wire.Ping...)
		buf = append(buf, '\n')
	}
	buf, last, n, more, ok := s.fill(c.sent.Load(), math.MaxUint64, buf)
	if !ok { // fell behind the history window: the writer closes it
		putBatch(bp, buf)
		c.busy.Store(false)
		c.notify()
		return
	}
	if len(buf) == wire.FrameHeadroom {
		putBatch(bp, buf)
		c.release()
		return
	}
	c.sent.Store(last)
	frame := wire.TextFrame(buf)
	w, err := c.direct.write(frame)
	if err == nil && w == len(frame) {
		putBatch(bp, buf)
		s.delivered.Add(uint64(n))
		if more {
			c.notify()
		}
		c.release()
		return
	}
	// The socket took part of the frame, or failed: the writer, which
	// holds c.busy from here, finishes or reports it.
	*bp = buf // the whole buffer, for the pool
	c.carry, c.carryBuf, c.carryEvents = frame[w:], bp, n
	c.handoff.Store(true)
	c.notify()
}

// release gives up the socket and wakes the writer if it has work of its
// own waiting, which it may have left while the socket was held. Events are
// not its work: the next round sends them.
func (c *Conn) release() {
	c.busy.Store(false)
	if c.writerWork() {
		c.notify()
	}
}
