package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Every limit is tested just below it, at it and just above it: the first
// two are served, the third gets the documented refusal.

type limitCase struct {
	name string
	n    int  // how far the input goes
	over bool // whether that is past the limit
}

func boundary(limit int) []limitCase {
	return []limitCase{
		{"just below", limit - 1, false},
		{"at", limit, false},
		{"just above", limit + 1, true},
	}
}

// stillServed checks that c's connection is open and receives a new event.
func stillServed(t *testing.T, sv *server, c *client) {
	t.Helper()
	seq := sv.publish(`"still served"`)
	for {
		if e := c.nextOf(t, "event"); e.Seq == seq {
			return
		}
	}
}

func TestLimitConnections(t *testing.T) {
	const limit = 3
	sv := newServer(t, fanout.WithMaxConnections(limit))
	var held []*client
	for range limit - 1 { // up to just below the limit
		held = append(held, dial(t, sv.url(""), nil))
	}
	held = append(held, dial(t, sv.url(""), nil)) // at the limit
	assert.Equal(t, limit, sv.s.Stats().Connections)
	assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, sv.url(""), nil), "just above the limit")

	require.NoError(t, held[0].ws.Close(websocket.StatusNormalClosure, ""))
	waitConnections(t, sv.s, limit-1)
	dial(t, sv.url(""), nil) // a freed slot is reusable
	assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, sv.url(""), nil))
}

// publishOfSize is a publish message of exactly n bytes.
func publishOfSize(t *testing.T, n int) string {
	t.Helper()
	base := len(publishMsg("x", `""`))
	require.GreaterOrEqual(t, n, base)
	return publishMsg("x", `"`+strings.Repeat("p", n-base)+`"`)
}

func TestLimitMessageSize(t *testing.T) {
	const limit = 1024
	for _, tc := range boundary(limit) {
		t.Run("client frame "+tc.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithMaxMessageSize(limit))
			c := dial(t, sv.url(""), nil)
			frame := publishOfSize(t, tc.n)
			require.Len(t, frame, tc.n)
			c.send(t, frame)
			if tc.over {
				assert.Equal(t, websocket.StatusMessageTooBig, c.closed(t))
				assert.Equal(t, uint64(0), sv.s.Stats().Head)
				return
			}
			assert.Equal(t, uint64(1), c.nextOf(t, "ack").Seq)
		})
		t.Run("event data "+tc.name, func(t *testing.T) {
			data := `"` + strings.Repeat("d", tc.n-2) + `"`
			grow := func(context.Context, *fanout.Conn, json.RawMessage) (json.RawMessage, error) {
				return json.RawMessage(data), nil
			}
			sv := newServer(t, fanout.WithMaxMessageSize(limit), fanout.WithValidate(grow))
			c := dial(t, sv.url(""), nil)
			c.send(t, publishMsg("x", "1"))
			if tc.over {
				assert.Equal(t, "too_large", c.nextOf(t, "error").Code)
			} else {
				assert.Equal(t, tc.n, len(c.nextOf(t, "event").Data))
			}
			_, err := sv.s.Publish(context.Background(), []byte(data))
			if tc.over {
				require.ErrorIs(t, err, fanout.ErrTooLarge)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestLimitPublishRate(t *testing.T) {
	const burst = 5
	for _, tc := range boundary(burst) {
		t.Run(tc.name, func(t *testing.T) {
			// A refill of one per 1,000 s: only the burst counts.
			sv := newServer(t, fanout.WithPublishRate(0.001, burst))
			c := dial(t, sv.url(""), nil)
			var frame strings.Builder
			for i := range tc.n {
				frame.WriteString(publishMsg(fmt.Sprint(i), "1") + "\n")
			}
			c.send(t, frame.String())
			var acks, refused int
			for acks+refused < tc.n {
				switch m := c.next(t); m.Type {
				case "ack":
					acks++
				case "error":
					assert.Equal(t, "rate_limited", m.Code)
					assert.Equal(t, fmt.Sprint(tc.n-1), m.ID, "the last one is refused")
					refused++
				}
			}
			assert.Equal(t, min(tc.n, burst), acks)
			assert.Equal(t, tc.n-min(tc.n, burst), refused)
			assert.Equal(t, uint64(min(tc.n, burst)), sv.s.Stats().Head)
			stillServed(t, sv, c)
		})
	}
}

// 100 refusals within a second are tolerated; the 101st closes with 1008
// (WithPublishRate: "refused more than 100 times within a second").
func TestLimitPublishRefusals(t *testing.T) {
	const maxRefusals = 100
	for _, tc := range boundary(maxRefusals) {
		t.Run(tc.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithPublishRate(0.001, 1))
			c := dial(t, sv.url(""), nil)
			var frame strings.Builder
			for i := range 1 + tc.n { // one accepted, then n refused
				frame.WriteString(publishMsg(fmt.Sprint(i), "1") + "\n")
			}
			c.send(t, frame.String())
			if tc.over {
				assert.Equal(t, websocket.StatusPolicyViolation, c.closed(t))
				return
			}
			for range tc.n {
				assert.Equal(t, "rate_limited", c.nextOf(t, "error").Code)
			}
			stillServed(t, sv, c)
		})
	}
}

// The inbound budget counts every client message, whatever its type.
func TestLimitInboundBudget(t *testing.T) {
	const burst = 50
	for _, tc := range boundary(burst) {
		t.Run(tc.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithInboundRate(0.001, burst))
			c := dial(t, sv.url(""), nil)
			c.send(t, repeatLines(`{"type":"pong"}`, tc.n))
			if tc.over {
				assert.Equal(t, websocket.StatusPolicyViolation, c.closed(t))
				return
			}
			stillServed(t, sv, c)
		})
	}
	t.Run("default of 2,000, far above", func(t *testing.T) {
		sv := newServer(t)
		c := dial(t, sv.url(""), nil)
		for range 3 { // 6,000 messages at once: far past 2,000 plus the refill meanwhile
			if c.ws.Write(context.Background(), websocket.MessageText, []byte(repeatLines(`{"type":"pong"}`, 2000))) != nil {
				break
			}
		}
		assert.Equal(t, websocket.StatusPolicyViolation, c.closed(t))
	})
	t.Run("default of 2,000, below", func(t *testing.T) {
		sv := newServer(t)
		c := dial(t, sv.url(""), nil)
		c.send(t, repeatLines(`{"type":"pong"}`, 1000))
		stillServed(t, sv, c)
	})
}

// The history window: a resume from exactly window events back is served,
// one further back is reset.
func TestLimitHistoryWindow(t *testing.T) {
	const window, head = 4, 10
	for _, tc := range boundary(window) {
		t.Run(tc.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithHistory(window))
			for i := 1; i <= head; i++ {
				sv.publish(fmt.Sprint(i))
			}
			after := head - tc.n // tc.n events behind
			c := dial(t, sv.url(fmt.Sprintf("after=%d&epoch=%s", after, sv.s.Epoch())), nil)
			assert.Equal(t, uint64(head-window+1), c.welcome.Oldest)
			if tc.over {
				assert.False(t, c.welcome.Resumed)
				assert.Equal(t, uint64(1), sv.s.Stats().ResumesReset)
				stillServed(t, sv, c)
				return
			}
			require.True(t, c.welcome.Resumed)
			for i, e := range c.events(t, tc.n) {
				assert.Equal(t, uint64(after+1+i), e.Seq)
				assert.Equal(t, fmt.Sprint(after+1+i), string(e.Data))
			}
		})
	}
}

// The dedup window: a retry is recognized while its id is among the last
// window client publishes.
func TestLimitDedupWindow(t *testing.T) {
	const window = 3
	for _, tc := range boundary(window) {
		t.Run(tc.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithDedupWindow(window))
			c := dial(t, sv.url(""), nil)
			for i := range tc.n { // ids p0 (the one retried), p1, ...
				c.send(t, publishMsg(fmt.Sprintf("p%d", i), fmt.Sprint(i)))
				require.Equal(t, uint64(i+1), c.nextOf(t, "ack").Seq)
			}
			c.send(t, publishMsg("p0", "0"))
			ack := c.nextOf(t, "ack")
			if tc.over {
				assert.Equal(t, uint64(tc.n+1), ack.Seq, "p0 fell out of the window: a new event")
			} else {
				assert.Equal(t, uint64(1), ack.Seq, "the original seq")
				assert.Equal(t, uint64(tc.n), sv.s.Stats().Head, "not appended twice")
			}
		})
	}
}

// waitConnections polls until s has n connections.
func waitConnections(t *testing.T, s *fanout.Session, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Connections != n {
		if time.Now().After(deadline) {
			require.FailNow(t, "connections did not settle", "%d, want %d", s.Stats().Connections, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
