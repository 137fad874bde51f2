package fanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// maxPendingControl bounds the control messages (acks, errors, presence)
// queued for one connection; past it the connection is a slow consumer.
const maxPendingControl = 4096

// Conn is one client connection to a Session. It has a reader goroutine
// and, while it has work besides events, a writer goroutine; the session's
// pacer writes events (see direct.go). Its methods are safe
// for concurrent use and remain valid after the connection closed.
type Conn struct {
	s        *Session
	ws       *websocket.Conn
	netConn  net.Conn
	id       string
	identity Identity
	remote   string
	user     *userState  // set by register
	guard    *frameGuard // what the library reads the client through (guard.go)

	sent        atomic.Uint64 // last seq handed to the socket
	acked       atomic.Uint64 // highest seq the client acknowledged
	lastHeard   atomic.Int64  // Session.now of the last message from the client
	active      atomic.Bool   // a writer goroutine is running
	retire      atomic.Bool   // the pacer asks an idle writer to exit
	sock        *sync.Mutex   // held by whoever writes to the socket: the pacer, the writer or the library
	handoff     atomic.Bool   // the pacer handed the writer c.sock and a part-written frame
	work        atomic.Bool   // ctrl, pong or closing is set; changed under mu
	direct      *directWriter // nil: the writer does all writes
	carry       []byte        // with handoff: the rest of the frame
	carryBuf    *[]byte       // with handoff: the pooled buffer under carry
	carryEvents int           // with handoff: the events in the frame
	lastWrite   atomic.Int64  // Session.now when the writer last wrote (or started)
	writeStart  atomic.Int64  // Session.now when the write in progress began; 0 if none
	pingDue     atomic.Bool   // the writer should send a ping
	heartbeat   *time.Timer   // runs onHeartbeat

	mu       sync.Mutex
	ctrl     [][]byte // encoded control messages, in order
	pong     []byte   // the payload of the latest client ping not yet answered
	closing  bool     // a close was requested; reason in closeErr
	closeErr *CloseError
	flushTo  uint64 // with closing: send events up to this seq first
	finished bool   // the connection is ending: no writer or timer may start
	nextPing int64  // Session.now when the next ping is due
	pingAt   int64  // Session.now of the oldest unanswered ping, 0 if none

	wake    chan struct{} // cap 1: wakes a lingering writer
	writers sync.WaitGroup
	ctx     context.Context // cancelled when the reader ends
	cancel  context.CancelFunc
	done    chan struct{} // closed when the connection is fully over
}

func newConn(s *Session, ws *websocket.Conn, nc net.Conn, sock *sync.Mutex, id Identity, remote string) *Conn {
	var b [8]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		s: s, ws: ws, netConn: nc, identity: id, remote: remote,
		direct: newDirectWriter(nc),
		sock:   sock,
		id:     hex.EncodeToString(b[:]),
		wake:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	c.lastHeard.Store(s.now())
	return c
}

// ID returns the connection's id, unique within the session.
func (c *Conn) ID() string { return c.id }

// Identity returns who the connection belongs to.
func (c *Conn) Identity() Identity { return c.identity }

// RemoteAddr returns the client's network address as the request gave it.
func (c *Conn) RemoteAddr() string { return c.remote }

// Position returns the seq of the last event handed to the socket.
func (c *Conn) Position() uint64 { return c.sent.Load() }

// Acked returns the highest seq the client acknowledged on this connection.
func (c *Conn) Acked() uint64 { return c.acked.Load() }

// CloseReason returns why the connection closed (a *CloseError), or nil
// while it is open.
func (c *Conn) CloseReason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
	default:
		return nil
	}
	if c.closeErr == nil {
		return nil
	}
	return c.closeErr
}

// Close asks the connection to close with code and reason, for example
// ClosePolicy when the user's access was revoked. It returns at once; the
// connection is first sent every event published before the call and
// whatever else is queued for it. code must be 1000, 1001, 1008 or in
// 4000-4999; the reason is cut to 120 bytes.
func (c *Conn) Close(code CloseCode, reason string) error {
	switch {
	case code == CloseNormal, code == CloseGoingAway, code == ClosePolicy, code >= 4000 && code <= 4999:
	default:
		return fmt.Errorf("fanout: close code %d cannot be sent by the server", int(code))
	}
	c.requestCloseAfter(code, cutReason(reason), c.s.head.Load())
	return nil
}

// serve runs the connection until its reader ends. The caller runs finish.
func (c *Conn) serve() {
	now := c.s.now()
	c.mu.Lock()
	c.nextPing = now + int64(c.s.cfg.heartbeat)
	c.heartbeat = time.AfterFunc(c.s.cfg.heartbeat, c.onHeartbeat)
	c.mu.Unlock()
	c.kick() // sends the welcome
	c.readLoop()
}

// finish ends the connection for good and waits for its writer. It runs
// however serve ended, a panicking host hook included.
func (c *Conn) finish() {
	c.cancel()
	c.mu.Lock()
	c.finished = true
	if c.heartbeat != nil {
		c.heartbeat.Stop()
	}
	c.noteCloseLocked(CloseAbnormal, "connection ended")
	c.mu.Unlock()
	c.signal() // a waiting writer sees the cancelled context and exits
	c.writers.Wait()
	if c.handoff.Swap(false) { // handed over after the writer was gone
		putBatch(c.carryBuf, *c.carryBuf)
		c.carry, c.carryBuf = nil, nil
		c.sock.Unlock()
	}
	_ = c.ws.CloseNow()
	close(c.done)
}

// queuePong has the writer answer a client's WebSocket ping. Only the
// latest unanswered ping is answered, as RFC 6455 allows.
func (c *Conn) queuePong(payload []byte) {
	c.mu.Lock()
	c.pong = append(make([]byte, 0, len(payload)), payload...)
	c.work.Store(true)
	c.mu.Unlock()
	c.notify()
}

// abandon marks a connection that never registered as over, so that nothing
// (a client ping during its close handshake) starts a writer for it.
func (c *Conn) abandon() {
	c.mu.Lock()
	c.finished = true
	c.mu.Unlock()
	c.cancel()
}

// enqueue queues an encoded control message for the writer.
func (c *Conn) enqueue(msg []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.ctrl) >= maxPendingControl {
		c.mu.Unlock()
		c.s.slowCloses.Add(1)
		c.requestClose(CloseSlowConsumer, "too many pending messages")
		return
	}
	c.ctrl = append(c.ctrl, msg)
	c.work.Store(true)
	c.mu.Unlock()
	c.notify()
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
		c.work.Store(true)
	}
	c.mu.Unlock()
	c.notify()
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
	c.work.Store(true)
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
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
		_ = nc.SetWriteDeadline(time.Time{}) // the timer below bounds the handshake
		t := time.AfterFunc(d, func() { _ = nc.Close() })
		defer t.Stop()
	}
	_ = ws.Close(websocket.StatusCode(code), reason)
}

// noteReadError records the close reason the reader saw.
func (c *Conn) noteReadError(err error) {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.noteClose(CloseTooBig, "message too big")
	case websocket.CloseStatus(err) != -1:
		c.noteClose(CloseCode(websocket.CloseStatus(err)), "closed by client")
	default:
		c.noteClose(CloseAbnormal, "connection lost")
	}
}
