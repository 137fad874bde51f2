package client

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newWindowClient is a Client with just enough state for publish pacing,
// on connection 1, with the given publishes pending in that order.
func newWindowClient(maxInFlight int, ids ...string) *Client {
	c := &Client{cfg: defaultConfig(), pubs: map[string]*pub{}, pubKick: make(chan struct{}, 1)}
	c.cfg.maxInFlight = maxInFlight
	c.gen = 1
	c.window.reset(maxInFlight)
	for _, id := range ids {
		p := &pub{id: id, msg: []byte(`{"type":"publish","id":"` + id + `","data":1}`), result: make(chan result, 1)}
		p.elem = c.pending.PushBack(p)
		c.pubs[id] = p
	}
	return c
}

// send returns the ids appendPublishes sends at now, and its wake time.
func (c *Client) send(t *testing.T, now time.Time) ([]string, time.Time) {
	buf, more, wake := c.appendPublishes(nil, c.gen, now)
	require.False(t, more)
	var ids []string
	for line := range strings.SplitSeq(string(buf), "\n") {
		if line != "" {
			ids = append(ids, strings.Split(line, `"`)[7])
		}
	}
	return ids, wake
}

// reply answers publish id on connection gen and returns what its caller
// got, if anything.
func (c *Client) reply(gen uint64, id string, m message) (result, bool) {
	c.mu.Lock()
	p := c.pubs[id]
	c.mu.Unlock()
	m.ID = id
	c.answer(gen, &m)
	select {
	case r := <-p.result:
		return r, true
	default:
		return result{}, false
	}
}

var (
	acked   = message{Type: "ack", Seq: 7}
	invalid = message{Type: "error", Code: "invalid"}
	limited = message{Type: "error", Code: CodeRateLimited}
)

func TestWindowBoundsInFlight(t *testing.T) {
	c := newWindowClient(3, "a", "b", "c", "d", "e", "f")
	now := time.Now()
	ids, wake := c.send(t, now)
	assert.Equal(t, []string{"a", "b", "c"}, ids)
	assert.True(t, wake.IsZero(), "full, not paused: an answer reopens it")
	ids, _ = c.send(t, now)
	assert.Empty(t, ids)

	r, ok := c.reply(1, "b", acked)
	require.True(t, ok)
	assert.Equal(t, uint64(7), r.seq)
	ids, _ = c.send(t, now)
	assert.Equal(t, []string{"d"}, ids)

	_, ok = c.reply(1, "a", acked)
	require.True(t, ok)
	r, ok = c.reply(1, "c", invalid) // final, and frees a slot too
	require.True(t, ok)
	var pe *PublishError
	require.ErrorAs(t, r.err, &pe)
	assert.Equal(t, "invalid", pe.Code)
	ids, _ = c.send(t, now)
	assert.Equal(t, []string{"e", "f"}, ids)
}

func TestWindowRateLimitedRetriedInOrder(t *testing.T) {
	c := newWindowClient(4, "a", "b", "c", "d", "e", "f")
	now := time.Now()
	ids, _ := c.send(t, now)
	require.Equal(t, []string{"a", "b", "c", "d"}, ids)

	before := time.Now()
	_, ok := c.reply(1, "b", limited)
	assert.False(t, ok, "a rate limited publish stays pending")
	ids, _ = c.send(t, now)
	assert.Empty(t, ids, "the window shrank to one, with c and d in flight")

	_, _ = c.reply(1, "c", limited) // the same burst: no further pause
	_, ok = c.reply(1, "a", acked)
	require.True(t, ok)
	ids, wake := c.send(t, now)
	assert.Empty(t, ids, "paused")
	require.False(t, wake.IsZero())
	assert.GreaterOrEqual(t, wake.Sub(before), 50*time.Millisecond)
	assert.LessOrEqual(t, wake.Sub(before), 100*time.Millisecond+time.Since(before))

	// After the pause the window has grown from 1 to 2 (one ack), with d
	// still in flight: one probe, the oldest refused first.
	ids, _ = c.send(t, wake)
	assert.Equal(t, []string{"b"}, ids)
	_, ok = c.reply(1, "d", acked)
	require.True(t, ok)
	ids, _ = c.send(t, wake)
	assert.Equal(t, []string{"c", "e"}, ids, "original order, same ids")

	// The next refusal pauses again, the backoff started over after the
	// accepted publishes; the rest of that burst adds no pause.
	t0 := time.Now()
	_, _ = c.reply(1, "b", limited)
	_, _ = c.reply(1, "c", limited)
	_, _ = c.reply(1, "e", limited)
	_, wake = c.send(t, time.Now())
	assert.GreaterOrEqual(t, wake.Sub(t0), 50*time.Millisecond)
	assert.LessOrEqual(t, wake.Sub(t0), 100*time.Millisecond+time.Since(t0))
	ids, _ = c.send(t, wake)
	assert.Equal(t, []string{"b"}, ids, "one probe")

	// A refused probe pauses longer: 100–200 ms.
	t0 = time.Now()
	_, _ = c.reply(1, "b", limited)
	_, wake = c.send(t, time.Now())
	assert.GreaterOrEqual(t, wake.Sub(t0), 100*time.Millisecond)
	assert.LessOrEqual(t, wake.Sub(t0), 200*time.Millisecond+time.Since(t0))

	assert.Equal(t, uint64(6), c.rateLimited.Load())
	assert.Zero(t, c.resent.Load())
}

func TestWindowResendsAfterReconnect(t *testing.T) {
	c := newWindowClient(2, "a", "b", "c", "d")
	ids, _ := c.send(t, time.Now())
	require.Equal(t, []string{"a", "b"}, ids)

	c.gen = 2 // what connect does for a new connection
	c.window.reset(c.cfg.maxInFlight)
	_, ok := c.reply(1, "a", acked)
	assert.False(t, ok, "an answer from the old connection is ignored")
	ids, _ = c.send(t, time.Now())
	assert.Equal(t, []string{"a", "b"}, ids, "resent in order, through the window")
	assert.Equal(t, uint64(2), c.resent.Load())
	_, ok = c.reply(2, "a", acked)
	require.True(t, ok)
	ids, _ = c.send(t, time.Now())
	assert.Equal(t, []string{"c"}, ids)
	assert.Equal(t, uint64(2), c.resent.Load(), "c is new on this connection")
}
