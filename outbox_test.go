package fanout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Tests of what a connection writes, and of its writer: answers to
// publishes that race a close, no data after a close frame, TLS sockets
// (no direct writes), frames the socket did not take at once, pongs, idle
// writers retiring, and close frames after idle.

// drain returns every message the client read before its connection ended.
func (c *client) drain(t *testing.T) []msg {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "connection not closed")
	}
	var out []msg
	for {
		select {
		case m := <-c.msgs:
			out = append(out, m)
		default:
			return out
		}
	}
}

// A publish is committed if and only if it is answered: a close requested
// while a publish is on its way in either stops it before the commit or
// lets its ack out before the close frame. Otherwise a client told 1001
// resends an id whose ack it never got, and on a restarted process (new
// epoch, empty dedup window) it would be appended twice.
func TestPublishAnsweredIffCommitted(t *testing.T) {
	t.Run("Conn.Close from the validation hook", func(t *testing.T) {
		sv := newServer(t, fanout.WithValidate(func(_ context.Context, c *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
			_ = c.Close(fanout.ClosePolicy, "access revoked")
			return data, nil
		}))
		c := dial(t, sv.url(""), nil)
		c.send(t, `{"type":"publish","id":"p1","data":{}}`)
		acks := 0
		for _, m := range c.drain(t) {
			if m.Type == "ack" {
				acks++
			}
		}
		assert.Equal(t, websocket.StatusCode(fanout.ClosePolicy), websocket.CloseStatus(c.err))
		assert.Equal(t, sv.s.Stats().Head, uint64(acks), "committed publishes and acks differ")
	})

	t.Run("Shutdown while publishes stream in", func(t *testing.T) {
		const tries, burst = 40, 50
		for try := range tries {
			sv := newServer(t)
			c := dial(t, sv.url(""), nil)
			var b strings.Builder
			for i := range burst {
				fmt.Fprintf(&b, `{"type":"publish","id":"p%d","data":{}}`+"\n", i)
			}
			c.send(t, b.String())
			if try%2 == 1 {
				time.Sleep(time.Duration(try%7) * 100 * time.Microsecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			require.NoError(t, sv.s.Shutdown(ctx))
			cancel()
			acked := map[string]bool{}
			var events []msg
			for _, m := range c.drain(t) {
				switch m.Type {
				case "ack":
					acked[m.ID] = true
				case "event":
					events = append(events, m)
				}
			}
			require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(c.err))
			require.Equal(t, sv.s.Stats().Head, uint64(len(acked)), "try %d: committed publishes and acks differ", try)
			for _, ev := range events {
				require.True(t, acked[ev.ID], "try %d: event %d delivered, its publish %q never acked", try, ev.Seq, ev.ID)
			}
		}
	})
}

// When a client closes, the server echoes its close frame, and after that
// frame nothing else may come (RFC 6455 §5.5.1), however busy the session.
func TestNoDataAfterCloseFrame(t *testing.T) {
	const conns, parallel = 300, 30
	sv := newServer(t, fanout.WithBatchWindow(0), fanout.WithMaxConnections(conns))
	addr := strings.TrimPrefix(sv.hs.URL, "http://")
	stop := make(chan struct{})
	var pub sync.WaitGroup
	pub.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = sv.s.Publish(context.Background(), []byte(`{"x":1}`))
				time.Sleep(20 * time.Microsecond)
			}
		}
	})
	defer func() {
		close(stop)
		pub.Wait()
	}()

	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res, err := rawHandshake(addr, "", nil)
			if err != nil || res.conn == nil {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("conn %d: handshake: %v %d", i, err, res.status))
				mu.Unlock()
				return
			}
			c := res.conn
			defer c.nc.Close()
			_ = c.read(time.Second) // let events flow
			_, _ = c.nc.Write(closeFrame(1000, "bye"))
			closed := false
			for {
				ev := c.read(5 * time.Second)
				switch {
				case ev.eof:
					return
				case ev.err != nil:
					mu.Lock()
					bad = append(bad, fmt.Sprintf("conn %d: %v", i, ev.err))
					mu.Unlock()
					return
				case ev.closeCode != 0:
					closed = true
				case closed && len(ev.msgs) > 0:
					mu.Lock()
					bad = append(bad, fmt.Sprintf("conn %d: %d messages after the close frame", i, len(ev.msgs)))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Empty(t, bad)
}

// Over TLS the socket is not a plain file descriptor, so the pacer cannot
// write to it directly; the connection's writer sends its events instead,
// still every one, in order, several to a frame.
func TestTLSConnectionsGetEverything(t *testing.T) {
	s, err := fanout.NewSession("tls")
	require.NoError(t, err)
	hs := httptest.NewTLSServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(hs.URL, "https"),
		&websocket.DialOptions{HTTPClient: hs.Client()})
	require.NoError(t, err)
	defer ws.CloseNow()
	ws.SetReadLimit(-1)

	// Events published before the welcome come before this connection's
	// starting point; publish after it.
	_, frame, err := ws.Read(ctx)
	require.NoError(t, err)
	require.Contains(t, string(frame), `"type":"welcome"`)

	const n = 500
	go func() {
		for i := range n {
			_, _ = s.Publish(context.Background(), fmt.Appendf(nil, `{"i":%d}`, i))
		}
	}()
	want := uint64(1)
	for want <= n {
		_, frame, err := ws.Read(ctx)
		require.NoError(t, err, "at seq %d", want)
		for line := range strings.SplitSeq(string(frame), "\n") {
			var m struct {
				Type string `json:"type"`
				Seq  uint64 `json:"seq"`
			}
			if line == "" {
				continue
			}
			require.NoError(t, json.Unmarshal([]byte(line), &m))
			if m.Type == "event" {
				require.Equal(t, want, m.Seq)
				want++
			}
		}
	}
}

// A client that stops reading for a while fills its socket; the rest of
// each frame the socket did not take is finished by the connection's
// writer. When the client reads again it gets every event once, in order,
// in well-formed frames, and a reading bystander is not held up meanwhile.
func TestPausedReaderGetsEverything(t *testing.T) {
	const n, size = 1200, 16 << 10 // about 20 MB, more than loopback socket buffers hold
	// The pause is not a stall: a loaded machine may take more than the
	// default write timeout to publish it all.
	sv := newServer(t, fanout.WithHistory(2*n), fanout.WithMaxMessageSize(2*size), fanout.WithWriteTimeout(time.Minute))
	bystander := dial(t, sv.url(""), nil)
	res := rawDial(t, strings.TrimPrefix(sv.hs.URL, "http://"), "", nil)
	require.NotNil(t, res.conn, "status %d", res.status)
	paused := res.conn

	big := `"` + strings.Repeat("x", size) + `"`
	for i := 1; i <= n; i++ {
		sv.publish(big)
		require.Equal(t, uint64(i), bystander.nextOf(t, "event").Seq)
	}

	want := uint64(1)
	for _, m := range paused.rest {
		if m.Type == "event" {
			require.Equal(t, want, m.Seq)
			want++
		}
	}
	paused.rest = nil
	deadline := time.Now().Add(20 * time.Second)
	for want <= n {
		require.True(t, time.Now().Before(deadline), "stuck at seq %d", want)
		ev := paused.read(5 * time.Second)
		require.NoError(t, ev.err)
		require.False(t, ev.eof, "connection ended at seq %d", want)
		for _, m := range ev.msgs {
			if m.Type != "event" {
				continue
			}
			require.Equal(t, want, m.Seq, "gap or reorder")
			want++
		}
	}
	require.Zero(t, sv.s.Stats().SlowConsumerCloses)
}

// Idle connections hold no writer goroutine: writers start when there is
// something to send and end after lingering idle. Events and heartbeats
// still reach every connection afterwards.
func TestIdleConnectionsHoldNoWriter(t *testing.T) {
	sv := newServer(t, fanout.WithHeartbeat(time.Hour, time.Minute), fanout.WithLinger(20*time.Millisecond))
	base := runtime.NumGoroutine()
	const n = 20
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = dial(t, sv.url(""), nil)
	}
	// Per connection: the server's reader (ServeHTTP) and the test client's
	// reader; per session, the pacer. No writers once they have lingered.
	const want = 2*n + 1
	waitGoroutines(t, base+want)

	for round := 1; round <= 2; round++ {
		seq := sv.publish(`"wake up"`)
		for _, c := range cs {
			assert.Equal(t, seq, c.nextOf(t, "event").Seq)
		}
		waitGoroutines(t, base+want)
	}
}

// waitGoroutines polls until at most want goroutines run. It polls inline:
// require.Eventually would add goroutines of its own to the count.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			require.FailNow(t, "goroutines did not return", "%d running, want at most %d", runtime.NumGoroutine(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A connection that has been idle for longer than the write timeout still
// gets its close frame, with the code PROTOCOL.md documents, and not an
// abnormal closure (1006): a client tells a terminal 4000 or 1008 from a
// retryable 4002 or 1001 only by that code.
func TestCloseFrameSentAfterIdle(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	idle := func() { time.Sleep(3 * writeTimeout) } // longer than the write timeout, nothing sent

	// With the defaults (heartbeat timeout 10 s, write timeout 10 s) the
	// close is written about when the ping's write deadline passes.
	t.Run("heartbeat timeout longer than the write timeout", func(t *testing.T) {
		sv := newServer(t, fanout.WithHeartbeat(writeTimeout, 3*writeTimeout), fanout.WithWriteTimeout(writeTimeout))
		c := dialRaw(t, sv.url(""), nil, true)
		assert.Equal(t, websocket.StatusCode(fanout.CloseHeartbeatTimeout), c.closed(t))
	})
	t.Run("protocol error after idle", func(t *testing.T) {
		sv := newServer(t, fanout.WithWriteTimeout(writeTimeout))
		c := dial(t, sv.url(""), nil)
		idle()
		c.send(t, `{oops`)
		assert.Equal(t, websocket.StatusCode(fanout.CloseProtocolError), c.closed(t))
	})
	t.Run("shutdown after idle", func(t *testing.T) {
		sv := newServer(t, fanout.WithWriteTimeout(writeTimeout))
		c := dial(t, sv.url(""), nil)
		idle()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, sv.s.Shutdown(ctx))
		assert.Equal(t, websocket.StatusGoingAway, c.closed(t))
	})
}

// A client's WebSocket ping is answered with a pong carrying its payload,
// sent by the connection's writer, while events keep flowing in frames of
// their own.
func TestClientPingAnswered(t *testing.T) {
	sv := newServer(t)
	res := rawDial(t, strings.TrimPrefix(sv.hs.URL, "http://"), "", nil)
	require.NotNil(t, res.conn, "status %d", res.status)
	c := res.conn
	for i := range 3 {
		payload := []byte{'p', byte('0' + i)}
		c.write(t, frameSpec{op: opPing, payload: payload}.encode())
		sv.publish(`"between pings"`)
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			op, _, got, err := c.readFrame()
			require.NoError(t, err)
			if op == opPong {
				require.True(t, bytes.Equal(payload, got), "pong %q for ping %q", got, payload)
				break
			}
			require.Equal(t, byte(opText), op)
		}
	}
}
