package fanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

// Conn is one client connection to a Session. It has a reader goroutine
// and, while it has work besides events, a writer goroutine; the session's
// pacer writes its events. Its methods are safe for concurrent use and
// remain valid after the connection closed.
type Conn struct {
	s        *Session
	ws       *websocket.Conn
	netConn  net.Conn
	id       string
	identity Identity
	remote   string
	user     *userState  // set by register
	guard    *frameGuard // what the library reads the client through (guard.go)
	joinHead uint64      // set by register: the head then; events up to it are replayed to c, not live

	presenceFrom uint64 // the first presence delta news to it; set by register

	acked     atomic.Uint64 // highest seq the client acknowledged
	lastHeard atomic.Int64  // Session.now of the last message from the client
	hb        heartbeat

	outbox // what is written to the socket, by whom and when

	ctx    context.Context // cancelled when the reader ends
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection is fully over
}

func newConn(s *Session, ws *websocket.Conn, nc net.Conn, sock *sync.Mutex, id Identity, remote string) *Conn {
	var b [8]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		s: s, ws: ws, netConn: nc, identity: id, remote: remote,
		id:     hex.EncodeToString(b[:]),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	c.sock = sock
	c.direct = newDirectWriter(nc)
	c.wake = make(chan struct{}, 1)
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
// whatever else is queued for it. code must be 1000, 1001, 1008, 1011 (the
// host failed on this connection; clients reconnect with backoff) or in
// 4000-4999; the reason is cut to 120 bytes.
func (c *Conn) Close(code CloseCode, reason string) error {
	switch {
	case code == CloseNormal, code == CloseGoingAway, code == ClosePolicy, code == CloseInternalError, code >= 4000 && code <= 4999:
	default:
		return fmt.Errorf("fanout: close code %d cannot be sent by the server", int(code))
	}
	c.requestCloseAfter(code, cutReason(reason), c.s.head.Load())
	return nil
}

// serve runs the connection until its reader ends. The caller runs finish.
func (c *Conn) serve() {
	c.hb.start(c)
	c.wakeWriter() // sends the welcome
	c.readLoop()
}

// finish ends the connection for good and waits for its writer. It runs
// however serve ended, a panicking host hook included.
func (c *Conn) finish() {
	c.cancel()
	c.hb.stop()
	c.finishWriter()
	_ = c.ws.CloseNow()
	close(c.done)
}

// abandon marks a connection that never registered as over, so that nothing
// (a client ping during its close handshake) starts a writer for it.
func (c *Conn) abandon() {
	c.mu.Lock()
	c.finished = true
	c.mu.Unlock()
	c.cancel()
}
