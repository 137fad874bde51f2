package fanout

import (
	"math"
	"net"
	"sync"
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
// messages (the welcome, acks, presence, pings, pongs), closes, and the rest
// of a frame the socket did not take at once. Whoever writes to the socket
// holds c.sock, so frames never interleave: the pacer only tries it, and
// leaves a connection whose socket is taken to its writer; it hands a
// partly written frame, and c.sock with it, to the writer, which finishes it
// with blocking writes under the write timeout. A slow client therefore
// never holds up the pacer. The WebSocket library's own writes (the close
// frames of its handshakes) go through socketWriter, which takes c.sock as
// well, so they never land inside a part-written frame either; pongs to
// client pings are sent by the writer (queuePong).

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
	if c.direct == nil || !c.sock.TryLock() {
		c.notify()
		return
	}
	if c.writerWork() {
		c.release()
		return
	}
	if !r.frameFor(c.sent.Load()) { // fell behind: the writer closes it
		c.sock.Unlock()
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
	// holds c.sock from here, finishes or reports it. The round's frame is
	// shared, so the rest is copied.
	bp := batchPool.Get().(*[]byte)
	*bp = append((*bp)[:0], r.frame[w:]...)
	c.carry, c.carryBuf, c.carryEvents = *bp, bp, r.n
	c.handoff.Store(true)
	c.notify()
}

// release gives up the socket and wakes the writer if it has work of its
// own waiting, which it may have left while the socket was held. Events are
// not its work: the next round sends them, and if any came in while the
// socket was held (a round of another pacer that was just stopping could
// have held it), the pacer is told.
func (c *Conn) release() {
	c.sock.Unlock()
	if c.writerWork() {
		c.notify()
	} else if c.sent.Load() < c.s.head.Load() {
		c.s.poke()
	}
}

// socketWriter is what the WebSocket library writes through (its close
// frames): each write takes the connection's socket lock, like every other
// write to the socket, and then wakes the writer, which may have found the
// socket taken.
type socketWriter struct {
	mu sync.Mutex // Conn.sock
	nc net.Conn
	c  *Conn // set once the connection exists
}

func (w *socketWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.nc.Write(p)
	w.mu.Unlock()
	if w.c != nil {
		w.c.signal()
	}
	return n, err
}
