package client_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout/client"
)

// These tests drive the client with a hand-written server, for what a real
// session never does: go silent, skip or repeat a seq.

func TestDeadServerDetected(t *testing.T) {
	var conns atomic.Int32
	srv := rawServer(t, func(c *rawConn) {
		conns.Add(1)
		c.send(welcome("e", 0, c.n > 1, 50)) // then silence, though the socket stays open
		c.drain()
	})
	c := dial(t, srv.WS("/"), client.WithTimeout(100*time.Millisecond), client.WithBackoff(time.Millisecond, time.Millisecond))
	require.Eventually(t, func() bool { return conns.Load() >= 2 }, waitFor, tick)
	require.Eventually(t, func() bool { return c.Stats().Reconnects >= 1 }, waitFor, tick)
	assert.Nil(t, c.Err())
}

func TestQuietServerIsNotDead(t *testing.T) {
	// Pings keep a connection alive that carries no events.
	var conns atomic.Int32
	srv := rawServer(t, func(c *rawConn) {
		conns.Add(1)
		c.send(welcome("e", 0, false, 20))
		gone := make(chan struct{})
		go func() {
			c.drain()
			close(gone)
		}()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-gone:
				return
			case <-tk.C:
				c.send(`{"type":"ping"}`)
			}
		}
	})
	c := dial(t, srv.WS("/"), client.WithTimeout(130*time.Millisecond))
	time.Sleep(400 * time.Millisecond) // more than two dead-server windows
	assert.Equal(t, int32(1), conns.Load())
	assert.Zero(t, c.Stats().Reconnects)
}

func TestPongAndAcks(t *testing.T) {
	frames := make(chan string, 100)
	srv := rawServer(t, func(c *rawConn) {
		c.send(welcome("e", 0, false, 0))
		c.send(`{"type":"ping"}`)
		for seq := uint64(1); seq <= 50; seq++ {
			c.send(event(seq)) // one frame each
		}
		for {
			b := c.read()
			if b == nil {
				return
			}
			frames <- string(b)
		}
	})
	var col collector
	dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithAckInterval(50*time.Millisecond))
	col.waitLen(t, 50)

	var pongs, acks int
	var last uint64
	timeout := time.After(waitFor)
	for last < 50 || pongs == 0 {
		select {
		case f := <-frames:
			for line := range strings.SplitSeq(f, "\n") {
				var m struct {
					Type string
					Seq  uint64
				}
				require.NoError(t, json.Unmarshal([]byte(line), &m), line)
				switch m.Type {
				case "pong":
					pongs++
				case "ack":
					acks++
					require.Greater(t, m.Seq, last, "acks only move forward")
					last = m.Seq
				default:
					t.Fatalf("unexpected %q", line)
				}
			}
		case <-timeout:
			t.Fatalf("last ack %d", last)
		}
	}
	assert.Equal(t, 1, pongs)
	assert.Less(t, acks, 50, "acks are coalesced")
}

func TestDuplicatesDropped(t *testing.T) {
	srv := rawServer(t, func(c *rawConn) {
		c.send(welcome("e", 0, false, 0), event(1), event(2), event(2))
		c.send(event(1), event(3))
		c.drain()
	})
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle))
	col.waitLen(t, 3)
	requireContiguous(t, col.get(), 1, 3)
	assert.Equal(t, uint64(2), c.Stats().Duplicates)
	assert.Zero(t, c.Stats().Reconnects)
}

func TestGapReconnects(t *testing.T) {
	queries := make(chan string, 2)
	srv := rawServer(t, func(c *rawConn) {
		queries <- c.req.URL.RawQuery
		if c.n == 1 {
			c.send(welcome("ep", 0, false, 0), event(1), event(3))
		} else {
			c.send(welcome("ep", 3, true, 0), event(2), event(3))
		}
		c.drain()
	})
	var col collector
	c := dial(t, srv.WS("/ws?token=abc"), client.WithHandler(col.handle), client.WithBackoff(time.Millisecond, time.Millisecond))
	col.waitLen(t, 3)
	requireContiguous(t, col.get(), 1, 3)
	assert.Equal(t, "token=abc", <-queries)
	assert.Equal(t, "token=abc&after=1&epoch=ep", <-queries)
	assert.Equal(t, uint64(1), c.Stats().Reconnects)
}

func TestUnknownMessagesSkipped(t *testing.T) {
	srv := rawServer(t, func(c *rawConn) {
		c.send(welcome("e", 0, false, 0), `{"type":"join","user":"u","conn":"c2"}`,
			`{"type":"from-the-future","x":1}`, event(1), `{"type":"error","code":"x","message":"y"}`,
			`{"type":"leave","user":"u","conn":"c2"}`, event(2))
		c.drain()
	})
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle))
	col.waitLen(t, 2)
	requireContiguous(t, col.get(), 1, 2)
	assert.Zero(t, c.Stats().Reconnects)
}

func TestMalformedFrameReconnects(t *testing.T) {
	srv := rawServer(t, func(c *rawConn) {
		if c.n == 1 {
			c.send(welcome("e", 0, false, 0), event(1))
			c.send(`{"type":"event","seq":2,`)
		} else {
			c.send(welcome("e", 1, true, 0), event(2))
		}
		c.drain()
	})
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithBackoff(time.Millisecond, time.Millisecond))
	col.waitLen(t, 2)
	requireContiguous(t, col.get(), 1, 2)
	assert.Equal(t, uint64(1), c.Stats().Reconnects)
}

func TestDialNeedsWelcome(t *testing.T) {
	srv := rawServer(t, func(c *rawConn) {
		c.send(event(1))
		c.drain()
	})
	_, err := client.Dial(t.Context(), srv.WS("/"))
	require.ErrorContains(t, err, "welcome")

	silent := rawServer(t, func(c *rawConn) { c.drain() })
	_, err = client.Dial(t.Context(), silent.WS("/"), client.WithTimeout(50*time.Millisecond))
	require.ErrorContains(t, err, "welcome")
}

func TestFrameOverReadLimitStops(t *testing.T) {
	srv := rawServer(t, func(c *rawConn) {
		c.send(welcome("e", 0, false, 0))
		c.send(`{"type":"event","seq":1,"data":"` + strings.Repeat("x", 2000) + `"}`)
		c.drain()
	})
	c := dial(t, srv.WS("/"), client.WithReadLimit(1000))
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("client did not stop")
	}
	require.ErrorIs(t, c.Err(), websocket.ErrMessageTooBig)
}
