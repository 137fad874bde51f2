package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// closeCodes records why the session's connections closed.
type closeCodes struct {
	mu    sync.Mutex
	codes []fanout.CloseCode
}

func (cc *closeCodes) onLeave(c *fanout.Conn) {
	cc.mu.Lock()
	cc.codes = append(cc.codes, fanout.CloseCodeOf(c.CloseReason()))
	cc.mu.Unlock()
}

func (cc *closeCodes) get() []fanout.CloseCode {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return append([]fanout.CloseCode(nil), cc.codes...)
}

// publishAll publishes {"i":0} … {"i":n-1} from n goroutines at once and
// returns the seq each got, by payload index. queued is called once every
// goroutine is about to publish.
func publishAll(t *testing.T, ctx context.Context, c *client.Client, n int, queued func()) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	var ready, done sync.WaitGroup
	for i := range n {
		ready.Add(1)
		done.Go(func() {
			ready.Done()
			seq, err := c.Publish(ctx, fmt.Appendf(nil, `{"i":%d}`, i))
			assert.NoError(t, err, "publish %d", i)
			seqs[i] = seq
		})
	}
	ready.Wait()
	if queued != nil {
		queued()
	}
	done.Wait()
	return seqs
}

// requireDistinct checks that seqs are exactly 1..len(seqs) in some order.
func requireDistinct(t *testing.T, seqs []uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	for i, seq := range seqs {
		require.True(t, seq >= 1 && seq <= uint64(len(seqs)), "publish %d got seq %d", i, seq)
		require.False(t, seen[seq], "seq %d twice", seq)
		seen[seq] = true
	}
}

func TestPublishRateLimitedRetries(t *testing.T) {
	// Far more publishes at once than the server's rate lets through: the
	// refusals are retried, not returned, and the client never provokes the
	// 1008 that would stop it.
	var cc closeCodes
	sess, srv := newSession(t, fanout.WithPublishRate(5, 3), fanout.WithOnLeave(cc.onLeave))
	c := dial(t, srv.WS("/"))
	go func() { // nobody reads events in this test
		for range c.Events() {
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	const n = 40
	requireDistinct(t, publishAll(t, ctx, c, n, nil))
	assert.Equal(t, uint64(n), sess.Stats().Head)
	assert.Nil(t, c.Err(), "the client runs on")
	assert.Zero(t, c.Stats().Reconnects, "the connection was never closed")
	assert.NotContains(t, cc.get(), fanout.ClosePolicy)
	assert.Positive(t, c.Stats().RateLimited, "the rate limit was hit")
	t.Logf("%+v", c.Stats())
}

func TestPublishOutageBacklog(t *testing.T) {
	// Publishes made while the client is away all go out after the
	// reconnect, more than the server's default burst, without a flood.
	var cc closeCodes
	sess, err := fanout.NewSession("test", fanout.WithOnLeave(cc.onLeave))
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	srv, away, refused := newAwayServer(t, sess)
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	away.Store(true)
	require.Equal(t, 1, srv.Kill())
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	const n = 250
	seqs := publishAll(t, ctx, c, n, func() {
		// Let the client fail a few more reconnects with everything queued.
		before := refused.Load()
		require.Eventually(t, func() bool { return refused.Load() >= before+2 }, waitFor, tick)
		away.Store(false)
	})
	requireDistinct(t, seqs)
	assert.Equal(t, uint64(n), sess.Stats().Head)

	col.waitLen(t, n)
	events := col.get()
	requireContiguous(t, events, 1, n)
	for i, seq := range seqs { // each payload once, at the seq Publish returned
		assert.JSONEq(t, fmt.Sprintf(`{"i":%d}`, i), string(events[seq-1].Data))
	}
	assert.Nil(t, c.Err(), "the client runs on")
	assert.Equal(t, uint64(1), c.Stats().Reconnects)
	assert.NotContains(t, cc.get(), fanout.ClosePolicy)
	t.Logf("%+v", c.Stats())
}

// rawPublish is a publish as a raw server reads it.
type rawPublish struct {
	Type string
	ID   string
}

// readPublishes reads the client's frames and sends the ids of its
// publishes on the returned channel, which is closed when the client is
// gone.
func readPublishes(c *rawConn) <-chan []string {
	out := make(chan []string)
	go func() {
		defer close(out)
		for {
			f := c.read()
			if f == nil {
				return
			}
			var ids []string
			for line := range strings.SplitSeq(string(f), "\n") {
				var m rawPublish
				if json.Unmarshal([]byte(line), &m) == nil && m.Type == "publish" {
					ids = append(ids, m.ID)
				}
			}
			if len(ids) > 0 {
				out <- ids
			}
		}
	}()
	return out
}

func ack(id string, seq int) string {
	return fmt.Sprintf(`{"type":"ack","id":%q,"seq":%d}`, id, seq)
}

func TestPublishMaxInFlight(t *testing.T) {
	// The server holds its acks until the client stops sending: the client
	// never has more than the window unanswered, and sends each publish once.
	const window, n = 4, 20
	var most atomic.Int32
	var sends atomic.Int32
	srv := rawServer(t, func(c *rawConn) {
		c.send(welcome("e", 0, false, 0))
		in := readPublishes(c)
		var held []string
		seq := 0
		for {
			select {
			case ids, ok := <-in:
				if !ok {
					return
				}
				held = append(held, ids...)
				sends.Add(int32(len(ids)))
				if int32(len(held)) > most.Load() {
					most.Store(int32(len(held)))
				}
				continue
			case <-time.After(30 * time.Millisecond): // the client is waiting
			}
			var lines []string
			for _, id := range held {
				seq++
				lines = append(lines, ack(id, seq))
			}
			held = nil
			if len(lines) > 0 {
				c.send(lines...)
			}
		}
	})
	c := dial(t, srv.WS("/"), client.WithMaxInFlight(window))
	requireDistinct(t, publishAll(t, t.Context(), c, n, nil))
	assert.Equal(t, int32(window), most.Load(), "the window was filled, never exceeded")
	assert.Equal(t, int32(n), sends.Load(), "each publish sent once")
}

func TestPublishRateLimitPausesWindow(t *testing.T) {
	// A server that refuses everything for a while: after the first
	// window's worth of refusals the client only probes, one publish per
	// growing pause, then sends the same ids again once the server takes
	// them.
	const window, n = 8, 12
	const refuseFor = 700 * time.Millisecond
	var refusals atomic.Int32
	var mu sync.Mutex
	sends := map[string]int{} // by id
	srv := rawServer(t, func(c *rawConn) {
		c.send(welcome("e", 0, false, 0))
		var start time.Time
		seq := 0
		for ids := range readPublishes(c) {
			if start.IsZero() {
				start = time.Now()
			}
			var lines []string
			for _, id := range ids {
				mu.Lock()
				sends[id]++
				mu.Unlock()
				if time.Since(start) < refuseFor {
					refusals.Add(1)
					lines = append(lines, fmt.Sprintf(`{"type":"error","code":"rate_limited","message":"slow down","id":%q}`, id))
					continue
				}
				seq++
				lines = append(lines, ack(id, seq))
			}
			c.send(lines...)
		}
	})
	c := dial(t, srv.WS("/"), client.WithMaxInFlight(window))
	requireDistinct(t, publishAll(t, t.Context(), c, n, nil))

	// At most one window, then a probe after each pause: 50–100, 100–200,
	// 200–400, 400–800 ms.
	r := refusals.Load()
	assert.GreaterOrEqual(t, r, int32(3))
	assert.LessOrEqual(t, r, int32(window+4))
	assert.Equal(t, uint64(r), c.Stats().RateLimited)
	mu.Lock()
	assert.Len(t, sends, n, "refused publishes were sent again with the same ids")
	mu.Unlock()
	assert.Zero(t, c.Stats().Resent, "a refusal is not a resend on a new connection")
	assert.Nil(t, c.Err())
}
