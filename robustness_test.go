package fanout_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// A retry of a committed publish gets its original ack even when the
// connection's rate budget is spent and the hook would now refuse it.
func TestRetryOfCommittedPublishBypassesLimits(t *testing.T) {
	var seen atomic.Int32
	refuseRepeats := func(context.Context, *fanout.Conn, json.RawMessage) (json.RawMessage, error) {
		if seen.Add(1) > 1 {
			return nil, fanout.ErrForbidden
		}
		return json.RawMessage(`1`), nil
	}
	sv := newServer(t, fanout.WithAuthenticate(authByHeader), fanout.WithPublishRate(0.001, 1), fanout.WithValidate(refuseRepeats))
	a1 := dial(t, sv.url(""), user("alice"))
	a1.send(t, `{"type":"publish","id":"p1","data":1}`)
	require.Equal(t, uint64(1), a1.nextOf(t, "ack").Seq)

	a2 := dial(t, sv.url(""), user("alice"))
	a2.send(t, `{"type":"publish","id":"p2","data":2}`+"\n"+`{"type":"publish","id":"p1","data":1}`)
	// p2 spends the new connection's only token; p1 is still acked.
	answers := map[string]msg{}
	for len(answers) < 2 {
		if m := a2.next(t); m.Type == "ack" || m.Type == "error" {
			answers[m.ID] = m
		}
	}
	acks := answers
	assert.Equal(t, "ack", acks["p1"].Type)
	assert.Equal(t, uint64(1), acks["p1"].Seq)
	assert.Equal(t, uint64(1), sv.s.Stats().Head)
}

// Invalid UTF-8 would make browsers fail the whole connection; it is
// refused on the way in.
func TestInvalidUTF8Refused(t *testing.T) {
	sv := newServer(t)
	_, err := sv.s.Publish(context.Background(), []byte("\"\xff\xfe\""))
	assert.ErrorIs(t, err, fanout.ErrInvalidJSON)
	c := dial(t, sv.url(""), nil)
	c.send(t, "{\"type\":\"publish\",\"id\":\"x\",\"data\":\"\xff\xfe\"}")
	assert.Equal(t, websocket.StatusInvalidFramePayloadData, c.closed(t), "RFC 6455 section 8.1")
	assert.Equal(t, uint64(0), sv.s.Stats().Head)
}

// A panicking validation hook closes that connection with 1011 and leaves
// no ghost behind: it leaves presence, Stats and OnLeave as any other.
func TestPanickingHookContained(t *testing.T) {
	left := make(chan struct{}, 1)
	sv := newServer(t,
		fanout.WithValidate(func(_ context.Context, _ *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
			var v map[string]any
			_ = json.Unmarshal(data, &v)
			_ = v["k"].(string) // a host bug: panics on {"k":1}
			return data, nil
		}),
		fanout.WithOnLeave(func(*fanout.Conn) { left <- struct{}{} }))
	other := dial(t, sv.url(""), nil)
	c := dial(t, sv.url(""), nil)
	c.send(t, `{"type":"publish","id":"x","data":{"k":1}}`)
	assert.Equal(t, websocket.StatusCode(1011), c.closed(t))
	<-left
	assert.Equal(t, 1, sv.s.Stats().Connections)
	sv.publish(`"ok"`)
	assert.Equal(t, `"ok"`, string(other.nextOf(t, "event").Data))
}

// A panicking join hook does not leave a ghost either.
func TestPanickingJoinHookContained(t *testing.T) {
	var joins atomic.Int32
	sv := newServer(t, fanout.WithOnJoin(func(*fanout.Conn) {
		if joins.Add(1) == 1 {
			panic("host bug")
		}
	}))
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, sv.url(""), nil)
	require.NoError(t, err)
	defer ws.CloseNow()
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 0 && joins.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	c := dial(t, sv.url(""), nil)
	assert.Len(t, c.welcome.Presence, 1, "no ghost in presence")
}

// With a timeout longer than the interval, pings still come every
// interval, as the welcome announces.
func TestHeartbeatIntervalKeptWithLongTimeout(t *testing.T) {
	sv := newServer(t, fanout.WithHeartbeat(50*time.Millisecond, time.Second))
	c := dial(t, sv.url(""), nil)
	start := time.Now()
	for range 5 {
		c.nextPing(t)
	}
	// Five pings at a 50 ms interval take about 250 ms; pinging at the
	// timeout would take five seconds. Generous bound for a busy machine.
	assert.Less(t, time.Since(start), 3*time.Second)
}

// Conn.Close sends the events published before it, then closes.
func TestConnCloseFlushesEvents(t *testing.T) {
	sv := newServer(t)
	c := dial(t, sv.url(""), nil)
	sv.publish(`"you were removed"`)
	for _, k := range sv.s.Conns() {
		require.NoError(t, k.Close(fanout.ClosePolicy, "removed"))
	}
	assert.Equal(t, `"you were removed"`, string(c.nextOf(t, "event").Data))
	assert.Equal(t, websocket.StatusPolicyViolation, c.closed(t))
}
