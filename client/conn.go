package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// closeWait is how long Close lets the server answer the close frame before
// the connection is dropped.
const closeWait = time.Second

// errSilent reports a server that sent nothing for its heartbeat interval
// plus the client's timeout.
var errSilent = errors.New("fanout/client: server silent past its heartbeat")

// conn is one WebSocket connection, from its welcome to its end. The run
// goroutine reads it; one writer goroutine is the only one that writes to it.
type conn struct {
	ws          *websocket.Conn
	gen         uint64
	readTimeout time.Duration // 0: the server sends no heartbeat
	rest        []message     // what followed the welcome in its frame
	resuming    atomic.Bool   // dropped on purpose, to resume after a full buffer

	// ctx is cancelled to drop the connection at once: a read or write in
	// progress under it closes the socket.
	ctx    context.Context
	cancel context.CancelFunc

	ackable    atomic.Uint64 // highest seq received on this connection and processed
	ackKick    chan struct{}
	pongKick   chan struct{}
	writerDone chan struct{}
}

// resume drops the connection so that the client reconnects at once and
// resumes after the last event it queued.
func (cn *conn) resume() {
	cn.resuming.Store(true)
	cn.cancel()
}

// connect dials, waits for the welcome and applies it to the position.
// Only the goroutine that owns the position (Dial, then run) calls it.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, c.connURL(), &websocket.DialOptions{
		HTTPClient: c.cfg.httpClient,
		HTTPHeader: c.cfg.header,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &HandshakeError{StatusCode: resp.StatusCode, Body: readBody(resp), Err: err}
		}
		return nil, fmt.Errorf("fanout/client: dial: %w", err)
	}
	ws.SetReadLimit(c.cfg.readLimit)
	var msgs []message
	for len(msgs) == 0 && err == nil {
		msgs, err = readFrame(dctx, ws)
	}
	if err == nil && msgs[0].Type != "welcome" {
		err = fmt.Errorf("fanout/client: first message is %q, not a welcome", msgs[0].Type)
	}
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("fanout/client: waiting for welcome: %w", err)
	}
	w, rest := msgs[0], msgs[1:]
	var snap *message
	if w.Snapshot && !w.Resumed { // the next message is the snapshot
		for len(rest) == 0 && err == nil {
			rest, err = readFrame(dctx, ws)
		}
		if err == nil && rest[0].Type != "snapshot" {
			err = fmt.Errorf("fanout/client: %q after a welcome announcing a snapshot", rest[0].Type)
		}
		if err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("fanout/client: waiting for snapshot: %w", err)
		}
		if c.cfg.onSnapshot != nil {
			snap = &rest[0]
		}
		rest = rest[1:]
	}
	cn := &conn{
		ws:         ws,
		rest:       rest,
		ackKick:    make(chan struct{}, 1),
		pongKick:   make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	if w.Heartbeat > 0 {
		cn.readTimeout = time.Duration(w.Heartbeat)*time.Millisecond + c.cfg.timeout
	}
	cn.ctx, cn.cancel = context.WithCancel(context.Background())

	c.mu.Lock()
	switch {
	case snap != nil:
		// The application's state is replaced by the snapshot, and the
		// events after its seq follow.
		if c.known {
			c.resets.Add(1)
		}
		c.snapshots.Add(1)
		c.rseq, c.repoch = snap.Seq, snap.Epoch
		c.queue = append(c.queue, item{ev: Event{Seq: snap.Seq, Epoch: snap.Epoch, Data: snap.Data}, snapshot: true})
		kick(c.qKick)
	case c.known && (!w.Resumed || c.repoch != "" && c.repoch != w.Epoch):
		// The position is gone: the application resyncs to head before
		// the events after it.
		c.resets.Add(1)
		c.rseq, c.repoch = w.Head, w.Epoch
		c.queue = append(c.queue, item{ev: Event{Seq: w.Head, Epoch: w.Epoch}, reset: true})
		kick(c.qKick)
	case !c.known && w.Resumed && w.After != nil:
		// The server resumed the identity from its acked position.
		c.rseq, c.repoch = *w.After, w.Epoch
		c.seq, c.epoch = *w.After, w.Epoch
	case !c.known:
		// A fresh start: live events after head, nothing to process before.
		c.rseq, c.repoch = w.Head, w.Epoch
		c.seq, c.epoch = w.Head, w.Epoch
	case c.repoch == "":
		// Resumed in "the current epoch", which is now known.
		c.repoch, c.epoch = w.Epoch, w.Epoch
	}
	c.known = true
	c.overflow = nil
	c.gen++
	cn.gen = c.gen
	c.window.reset(c.cfg.maxInFlight) // a new connection has a full token bucket
	c.mu.Unlock()
	return cn, nil
}

func readBody(resp *http.Response) string {
	if resp.Body == nil {
		return ""
	}
	b := make([]byte, 256)
	n, _ := resp.Body.Read(b)
	return strings.TrimSpace(string(b[:n]))
}

// readFrame reads one frame and splits it into messages.
func readFrame(ctx context.Context, ws *websocket.Conn) ([]message, error) {
	typ, b, err := ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errors.New("fanout/client: binary frame from server")
	}
	return decodeFrame(b)
}

// serve runs one connection until it ends, and returns why.
func (c *Client) serve(cn *conn) error {
	go c.writer(cn)
	err := c.receive(cn)
	cn.cancel()
	<-cn.writerDone
	cn.ws.CloseNow()
	return err
}

// receive reads the connection until it fails or the client is closed.
func (c *Client) receive(cn *conn) error {
	msgs := cn.rest
	cn.rest = nil
	for {
		if err := c.process(cn, msgs); err != nil {
			return err
		}
		var err error
		if msgs, err = c.read(cn); err != nil {
			return err
		}
	}
}

func (c *Client) read(cn *conn) ([]message, error) {
	ctx, cancel := cn.ctx, context.CancelFunc(func() {})
	if cn.readTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, cn.readTimeout)
	}
	msgs, err := readFrame(ctx, cn.ws)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w (%v)", errSilent, cn.readTimeout)
	}
	return msgs, err
}

// process handles one frame's messages: answers and heartbeats at once,
// events into the delivery queue.
func (c *Client) process(cn *conn, msgs []message) error {
	events := false
	for i := range msgs {
		m := &msgs[i]
		switch m.Type {
		case "event":
			events = true
		case "ping":
			kick(cn.pongKick)
		case "ack":
			c.answer(cn.gen, m)
		case "error":
			if m.ID != "" {
				c.answer(cn.gen, m)
			} else {
				c.log.Warn("fanout/client: server error", "code", m.Code, "message", m.Message)
			}
		case "join", "leave":
			// Presence is not exposed by this client.
		case "welcome":
			return errors.New("fanout/client: second welcome on a connection")
		default:
			// Newer servers may send more; skipping keeps this client working.
			c.log.Debug("fanout/client: unknown message type", "type", m.Type)
		}
	}
	if !events {
		return nil
	}
	return c.enqueue(cn, msgs)
}

// terminal reports whether err means reconnecting cannot help.
func terminal(err error) bool {
	if he := (*HandshakeError)(nil); errors.As(err, &he) {
		return !he.retryable()
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return true // the same frame would come again; raise WithReadLimit
	}
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, // the server is done with us
		websocket.StatusProtocolError,
		websocket.StatusUnsupportedData,
		websocket.StatusInvalidFramePayloadData,
		websocket.StatusPolicyViolation, // abuse: do not retry blindly
		websocket.StatusMessageTooBig,   // a publish too large for the server
		4000:                            // fanout protocol error: a client bug
		return true
	}
	return false
}
