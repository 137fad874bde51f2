package fanout

import (
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/fanout-go/fanout/internal/wire"
)

// What a connection writes, and who may write it.
//
// Three parties write to a connection's socket: the session's pacer (events,
// in rounds; see Session.writeRound), the connection's writer goroutine
// (everything else), and the WebSocket library (the close frames of its
// handshakes, through socketWriter). The rules:
//
//  1. Whoever writes holds sock. The pacer only tries it and never waits;
//     the writer and the library wait for it. So frames never interleave.
//  2. The pacer writes a connection's events, and the presence messages it
//     gathered (Session.flushPresence), only when the writer has no work
//     of its own (flagWork, flagPing): control messages go first, and the
//     welcome precedes every event. Otherwise presence is queued for the
//     writer like any control message.
//  3. A frame the socket did not take at once is handed, with sock still
//     held, to the writer: the pacer fills partial and sets flagHandoff, and
//     from then on the writer owns both until it has finished the frame.
//     If the writer is gone by then, finish lets go of them.
//  4. No data frame follows a close frame. The library marks flagClosed,
//     holding sock, before it writes one; whoever takes sock checks the
//     flag before writing.
//  5. The goroutine that makes a blocking write sets its write deadline
//     and lifts it again before letting go of sock. Nobody else touches a
//     socket's deadline, so the pacer's non-blocking writes never meet one.
//  6. The writer goroutine runs only while it has work: whoever queues
//     work calls wakeWriter, which starts one unless one runs (flagActive).
//     The pacer retires a writer idle for the linger time (flagRetire).
//  7. A client publish committed while the connection is closing is still
//     answered: the writer closes only once no publish is between its
//     commit and its answer (publishing) and the queue is empty.
//
// ctrl, pong, publishing and the close request are guarded by mu; flagWork
// says, without the lock, that one of them is set. sent is the cursor: the
// last seq handed to the socket, stored by whoever holds sock.

// maxPendingControl bounds the control messages (acks, errors, presence)
// queued for one connection; past it the connection is a slow consumer.
const maxPendingControl = 4096

// The bits of outbox.flags.
const (
	flagActive  uint32 = 1 << iota // a writer goroutine runs
	flagRetire                     // the pacer asks an idle writer to exit
	flagHandoff                    // the writer owns sock and partial
	flagWork                       // ctrl, pong or a close request is pending; changed under mu
	flagPing                       // the writer should send a ping
	flagClosed                     // a close frame went out: no data frame may follow
)

// flags is a word of the bits above, each set and cleared atomically.
type flags struct{ v atomic.Uint32 }

func (f *flags) has(b uint32) bool { return f.v.Load()&b != 0 }

// set sets b and reports whether it was clear before.
func (f *flags) set(b uint32) bool { return f.v.Or(b)&b == 0 }

// clear clears b and reports whether it was set before.
func (f *flags) clear(b uint32) bool { return f.v.And(^b)&b != 0 }

// partialFrame is the rest of a frame the socket did not take at once.
type partialFrame struct {
	rest   []byte
	buf    *[]byte // the pooled buffer under rest
	events int     // the events in the frame, counted as delivered once written
	size   int     // the whole frame's, for an observer
	stamp  int64   // with an observer: Session.stampFor its first event
}

func (p *partialFrame) free() {
	putBatch(p.buf, *p.buf)
	*p = partialFrame{}
}

// outbox is the socket side of a Conn: everything that decides what is
// written to the connection, by whom and when.
type outbox struct {
	sock      *sync.Mutex   // held by whoever writes to the socket
	direct    *directWriter // the pacer's non-blocking writes; nil: the writer does all writes
	sent      atomic.Uint64 // cursor: the last seq handed to the socket
	flags     flags
	partial   partialFrame // with flagHandoff
	lastWrite atomic.Int64 // Session.now when the writer last wrote (or started)

	mu         sync.Mutex
	ctrl       [][]byte // encoded control messages, in order
	pong       []byte   // the payload of the latest client ping not yet answered
	publishing int      // client publishes committed and not yet answered
	closing    bool     // a close was requested; reason in closeErr
	closeErr   *CloseError
	flushTo    uint64 // with closing: send events up to this seq first
	finished   bool   // the connection is ending: no writer may start

	wake    chan struct{} // cap 1: wakes a parked writer
	writers sync.WaitGroup
}

// wakeWriter makes sure the writer goroutine runs and looks for work.
func (c *Conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if c.flags.has(flagActive) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished || !c.flags.set(flagActive) {
		return
	}
	c.writers.Add(1)
	go c.runWriter()
}

// writerWork reports whether the writer has work besides events, which the
// pacer's rounds send.
func (c *Conn) writerWork() bool {
	return c.flags.v.Load()&(flagHandoff|flagWork|flagPing) != 0
}

// pending reports whether the connection has anything to send.
func (c *Conn) pending() bool {
	return c.writerWork() || c.sent.Load() < c.s.head.Load()
}

// queue queues an encoded control message for the writer. Once the
// connection is closing only answers to publishes are still sent (answer).
func (c *Conn) queue(msg []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.queueLocked(msg)
}

// answer queues the reply to a client publish, even while the connection
// is closing: the writer sends it before the close frame.
func (c *Conn) answer(msg []byte) {
	c.mu.Lock()
	c.queueLocked(msg)
}

// queueLocked appends msg; c.mu is held and is let go here.
func (c *Conn) queueLocked(msg []byte) {
	if len(c.ctrl) >= maxPendingControl {
		c.mu.Unlock()
		c.s.noteSlowConsumer()
		c.requestClose(CloseSlowConsumer, "too many pending messages")
		return
	}
	c.ctrl = append(c.ctrl, msg)
	c.flags.set(flagWork)
	c.mu.Unlock()
	c.wakeWriter()
}

// beginPublish is called by the reader before it commits a client
// publish; it returns false once the connection is closing, when the
// publish must not be committed (the client retries it after reconnecting).
// endPublish answers it.
func (c *Conn) beginPublish() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.publishing++
	return true
}

// endPublish queues the answer to a publish begun with beginPublish (nil
// when the session refused it).
func (c *Conn) endPublish(msg []byte) {
	c.mu.Lock()
	c.publishing--
	if msg == nil {
		c.flags.set(flagWork) // the writer may be waiting for this
		c.mu.Unlock()
		c.wakeWriter()
		return
	}
	c.queueLocked(msg)
}

// queuePong has the writer answer a client's WebSocket ping. Only the
// latest unanswered ping is answered, as RFC 6455 allows.
func (c *Conn) queuePong(payload []byte) {
	c.mu.Lock()
	c.pong = append(make([]byte, 0, len(payload)), payload...)
	c.flags.set(flagWork)
	c.mu.Unlock()
	c.wakeWriter()
}

// queuePing has the writer send a heartbeat ping.
func (c *Conn) queuePing() {
	c.flags.set(flagPing)
	c.wakeWriter()
}

// requestClose asks the writer to close the connection with code, sending
// only what is queued besides events (the error that explains the close).
// The first reason wins.
func (c *Conn) requestClose(code CloseCode, reason string) { c.requestCloseAfter(code, reason, 0) }

// requestCloseAfter asks the writer to close the connection with code once
// it has sent the events up to seq flushTo.
func (c *Conn) requestCloseAfter(code CloseCode, reason string, flushTo uint64) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.closeErr = &CloseError{Code: code, Reason: reason}
		c.flushTo = flushTo
		c.flags.set(flagWork)
	}
	c.mu.Unlock()
	c.wakeWriter()
}

// noteClose records why the connection closed if no reason is known yet.
func (c *Conn) noteClose(code CloseCode, reason string) {
	c.mu.Lock()
	c.noteCloseLocked(code, reason)
	c.mu.Unlock()
}

func (c *Conn) noteCloseLocked(code CloseCode, reason string) {
	if c.closeErr == nil {
		c.closeErr = &CloseError{Code: code, Reason: reason}
	}
	c.closing = true
	c.flags.set(flagWork)
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// offer is the pacer's part: it writes the round's frame for c's position
// with one non-blocking system call. It leaves the connection to its
// writer when the writer holds the socket or has work of its own, and
// hands the writer whatever the socket did not take.
func (c *Conn) offer(r *round) {
	if c.direct == nil || !c.sock.TryLock() {
		c.wakeWriter()
		return
	}
	if c.writerWork() || c.flags.has(flagClosed) {
		c.unlockSocket()
		return
	}
	if !r.frameFor(c.sent.Load()) { // fell behind: the writer closes it
		c.sock.Unlock()
		c.wakeWriter()
		return
	}
	if r.frame == nil {
		c.unlockSocket()
		return
	}
	c.sent.Store(r.last)
	w, err := c.direct.write(r.frame)
	if err == nil && w == len(r.frame) {
		c.s.delivered.Add(uint64(r.n))
		c.s.noteWrote(c, r.n, len(r.frame), r.after, 0)
		c.unlockSocket()
		if r.more { // a backlog: the writer catches up
			c.wakeWriter()
		}
		return
	}
	// The socket took part of the frame, or failed: the writer finishes or
	// reports it. The round's frame is shared, so the rest is copied.
	bp := batchPool.Get().(*[]byte)
	*bp = append((*bp)[:0], r.frame[w:]...)
	c.partial = partialFrame{rest: *bp, buf: bp, events: r.n, size: len(r.frame), stamp: c.s.stampFor(c, r.after)}
	c.flags.set(flagHandoff)
	c.wakeWriter()
}

// offerPresence is the pacer's write of gathered presence messages: frame
// (msg framed) with one non-blocking system call when the writer has no
// work of its own, else msg queued for the writer. What the socket does not
// take is handed to the writer, as in offer.
func (c *Conn) offerPresence(frame, msg []byte) {
	if c.direct == nil || !c.sock.TryLock() {
		c.queue(msg)
		return
	}
	if c.writerWork() || c.flags.has(flagClosed) {
		c.sock.Unlock()
		c.queue(msg) // dropped if the connection is closing
		return
	}
	w, err := c.direct.write(frame)
	if err == nil && w == len(frame) {
		c.unlockSocket()
		return
	}
	bp := batchPool.Get().(*[]byte)
	*bp = append((*bp)[:0], frame[w:]...)
	c.partial = partialFrame{rest: *bp, buf: bp}
	c.flags.set(flagHandoff)
	c.wakeWriter()
}

// unlockSocket lets go of sock and wakes whoever has work it may have left
// while sock was held: the writer for its own work, the pacer for events
// committed meanwhile (a round of a pacer that was just stopping could have
// held the socket).
func (c *Conn) unlockSocket() {
	c.sock.Unlock()
	if c.writerWork() {
		c.wakeWriter()
	} else if !c.flags.has(flagClosed) && c.sent.Load() < c.s.head.Load() {
		c.s.wakePacer()
	}
}

// runWriter is the connection's writer goroutine. It finishes frames the
// pacer handed over; sends control messages and, with them, the events
// pending from the cursor, packed into one frame; and closes the
// connection. Between writes it parks; it exits when the pacer retires it
// after lingering idle, and for good once the connection is over. Every way
// out lets go of sock.
func (c *Conn) runWriter() {
	defer c.writers.Done()
	s := c.s
	c.lastWrite.Store(s.now())
	for {
		if c.flags.clear(flagHandoff) {
			if !c.finishPartial() {
				return
			}
		} else if !c.sock.TryLock() {
			// The pacer or the library is writing; it wakes us when done.
			if !c.park() {
				return
			}
			continue
		}
		if c.flags.has(flagClosed) { // the library closed the connection
			c.sock.Unlock()
			return
		}

		c.mu.Lock()
		ctrl, pong, closing, ce, publishing := c.ctrl, c.pong, c.closing, c.closeErr, c.publishing
		upto := uint64(math.MaxUint64)
		if closing {
			upto = c.flushTo
		}
		c.ctrl, c.pong = nil, nil
		if !closing {
			c.flags.clear(flagWork)
		}
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
		if c.flags.clear(flagPing) {
			buf = append(buf, wire.Ping...)
			buf = append(buf, '\n')
		}
		after := c.sent.Load()
		buf, last, n, more, ok := s.fill(after, upto, buf)
		if !ok {
			putBatch(bp, buf)
			c.noteClose(CloseSlowConsumer, "fell behind the history window") // before the pacer can take the socket
			c.sock.Unlock()
			c.slowConsumer("fell behind the history window")
			return
		}
		if len(buf) == wire.FrameHeadroom { // nothing to write
			putBatch(bp, buf)
			if closing && publishing == 0 { // everything due before the close was sent
				c.sock.Unlock()
				c.closeHandshake(ce)
				return
			}
			c.sock.Unlock()
			if !c.park() {
				return
			}
			continue
		}
		if n > 0 {
			c.sent.Store(last)
		}
		frame := wire.TextFrame(buf)
		err := c.write(frame)
		putBatch(bp, buf)
		if err != nil {
			c.writeFailed(err)
			return
		}
		s.delivered.Add(uint64(n))
		s.noteWrote(c, n, len(frame), after, 0)
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

// finishPartial writes the rest of the frame the pacer handed over; the
// writer holds sock. It returns false when the write failed and the
// writer must exit.
func (c *Conn) finishPartial() bool {
	err := c.write(c.partial.rest)
	n, size, stamp := c.partial.events, c.partial.size, c.partial.stamp
	c.partial.free()
	if err != nil {
		c.writeFailed(err)
		return false
	}
	c.s.delivered.Add(uint64(n))
	c.s.noteWrote(c, n, size, 0, stamp)
	return true
}

// park waits to be woken. It returns false when the writer must exit: the
// connection is over, or the pacer retired the writer and nothing came in
// since.
func (c *Conn) park() bool {
	<-c.wake
	if c.ctx.Err() != nil {
		return false
	}
	if c.flags.clear(flagRetire) {
		c.flags.clear(flagActive)
		// Whoever queued work after our last look either sees flagActive
		// clear and starts a writer, or is seen here.
		if !c.pending() || !c.flags.set(flagActive) {
			return false
		}
	}
	return true
}

// write sends one frame in one blocking write, within the write timeout;
// the caller holds sock. Frames are made here (wire.TextFrame) rather than
// through the WebSocket library: the same bytes in one system call, without
// the library's message state, locks and copy into its buffer.
func (c *Conn) write(frame []byte) error {
	c.lastWrite.Store(c.s.now())
	_ = c.netConn.SetWriteDeadline(time.Now().Add(c.s.cfg.writeTimeout))
	_, err := c.netConn.Write(frame)
	_ = c.netConn.SetWriteDeadline(time.Time{})
	return err
}

// writeFailed ends the connection after a failed write; the caller holds
// sock, which is let go once the connection is marked closing, so that the
// pacer, which may take it next, leaves the connection alone. The write may
// have stopped inside a frame, so no close frame can follow it: the TCP
// connection is dropped. A write cut for taking too long is recorded as a
// slow consumer (4001); the client sees its connection end and resumes.
func (c *Conn) writeFailed(err error) {
	code, reason := CloseAbnormal, "write failed"
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.s.noteSlowConsumer()
		code, reason = CloseSlowConsumer, "write timed out"
	}
	c.noteClose(code, reason)
	c.sock.Unlock()
	c.drop(code, reason)
}

// slowConsumer closes a connection that cannot keep up, with a close
// frame; the caller does not hold sock. Nothing is skipped: the client
// reconnects and resumes from its last seq, or learns that its position is
// gone.
func (c *Conn) slowConsumer(reason string) {
	c.s.noteSlowConsumer()
	c.closeHandshake(&CloseError{Code: CloseSlowConsumer, Reason: reason})
}

// drop closes the TCP connection under the WebSocket at once.
func (c *Conn) drop(code CloseCode, reason string) {
	c.noteClose(code, reason)
	if c.netConn != nil {
		_ = c.netConn.Close()
	}
}

// closeHandshake sends the close frame and waits for the client's answer,
// for at most the write timeout, then drops the connection.
func (c *Conn) closeHandshake(ce *CloseError) {
	c.noteClose(ce.Code, ce.Reason)
	closeWithin(c.ws, c.netConn, ce.Code, ce.Reason, c.s.cfg.writeTimeout)
}

// closeWithin runs the WebSocket close handshake, dropping the TCP
// connection if it has not completed within d: a peer that does not answer
// must not hold a goroutine for the library's own, longer, timeouts.
func closeWithin(ws *websocket.Conn, nc net.Conn, code CloseCode, reason string, d time.Duration) {
	if nc != nil {
		t := time.AfterFunc(d, func() { _ = nc.Close() })
		defer t.Stop()
	}
	_ = ws.Close(websocket.StatusCode(code), reason)
}

// finishWriter ends the writer for good and waits for it; it frees a frame
// handed over after the writer was gone.
func (c *Conn) finishWriter() {
	c.mu.Lock()
	c.finished = true
	c.noteCloseLocked(CloseAbnormal, "connection ended")
	c.mu.Unlock()
	c.wakeWriter() // a parked writer sees the cancelled context and exits
	c.writers.Wait()
	if c.flags.clear(flagHandoff) {
		c.partial.free()
		c.sock.Unlock()
	}
}

// socketWriter is what the WebSocket library writes through: only close
// frames, since events and everything else are framed by the outbox and
// client pings are answered by the writer. Each write takes sock like every
// other write, marks the connection closed first, so that no data frame
// follows, and wakes the writer, which may have found the socket taken.
type socketWriter struct {
	mu      sync.Mutex // outbox.sock
	nc      net.Conn
	c       *Conn // set once the connection exists
	timeout time.Duration
}

func (w *socketWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.c != nil {
		w.c.flags.set(flagClosed)
	}
	_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.nc.Write(p)
	_ = w.nc.SetWriteDeadline(time.Time{})
	w.mu.Unlock()
	if w.c != nil {
		w.c.wakeWriter()
	}
	return n, err
}

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch+4096); return &b }}

func putBatch(bp *[]byte, buf []byte) {
	if cap(buf) > 1<<20 {
		return // a rare huge frame; let it go rather than pin it in the pool
	}
	*bp = buf[:0]
	batchPool.Put(bp)
}
