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
// messages (the welcome, acks, presence, pings), closes, and the rest of a frame
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

// send writes c's pending events from the pacer. It leaves the connection
// to its writer goroutine when the writer holds the socket or has work of
// its own (control messages go first: the welcome precedes every event);
// and it hands the writer whatever the socket did not take.
func (r *round) send(c *Conn) {
	if c.direct == nil || !c.busy.CompareAndSwap(false, true) {
		c.notify()
		return
	}
	if c.writerWork() {
		c.release()
		return
	}
	if !r.frameFor(c.sent.Load()) { // fell behind: the writer closes it
		c.busy.Store(false)
		c.notify()
		return
	}
	if r.frame == nil {
		c.release()
		return
	}
	c.sent.Store(r.last)
	w, err := c.direct.write(r.frame)
	if err == nil && w == len(r.frame) {
		r.s.delivered.Add(uint64(r.n))
		c.release()
		if r.more { // a backlog: the writer catches up
			c.notify()
		}
		return
	}
	// The socket took part of the frame, or failed: the writer, which
	// holds c.busy from here, finishes or reports it. The round's frame is
	// shared, so the rest is copied.
	bp := batchPool.Get().(*[]byte)
	*bp = append((*bp)[:0], r.frame[w:]...)
	c.carry, c.carryBuf, c.carryEvents = *bp, bp, r.n
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
