package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Tests of what a connection writes (outbox.go): the answers to publishes
// that race a close, and no data after a close frame.

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
