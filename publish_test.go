package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
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

// authByHeader is a test authentication hook: the X-User header names the
// identity; no header is refused.
func authByHeader(r *http.Request) (fanout.Identity, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return fanout.Identity{}, errors.New("no user")
	}
	return fanout.Identity{User: u}, nil
}

func user(name string) http.Header { return http.Header{"X-User": {name}} }

// A publish is acked with its seq; a retry of the same id by the same
// identity, even on another connection, gets the original seq and is not
// appended twice. Another identity's equal id is a different publish.
func TestPublishAckAndDedup(t *testing.T) {
	sv := newServer(t, fanout.WithAuthenticate(authByHeader))
	a1 := dial(t, sv.url(""), user("alice"))
	a1.send(t, `{"type":"publish","id":"p1","data":{"n":1}}`)
	// The ack and the event may come in either order.
	got := a1.collect(t, "ack", "event")
	ack, ev := got["ack"], got["event"]
	assert.Equal(t, "p1", ack.ID)
	assert.Equal(t, uint64(1), ack.Seq)
	assert.Equal(t, uint64(1), ev.Seq)
	assert.Equal(t, "alice", ev.From)
	assert.Equal(t, "p1", ev.ID)

	// Retry after a reconnect.
	a2 := dial(t, sv.url(""), user("alice"))
	a2.send(t, `{"type":"publish","id":"p1","data":{"n":1}}`)
	ack = a2.nextOf(t, "ack")
	assert.Equal(t, uint64(1), ack.Seq, "retry gets the original seq")

	b := dial(t, sv.url(""), user("bob"))
	b.send(t, `{"type":"publish","id":"p1","data":{"n":2}}`)
	ack = b.nextOf(t, "ack")
	assert.Equal(t, uint64(2), ack.Seq)
	assert.Equal(t, uint64(2), sv.s.Stats().Head)
}

// The dedup window is bounded: an id older than the window is new again.
func TestDedupWindowBounded(t *testing.T) {
	sv := newServer(t, fanout.WithDedupWindow(2))
	c := dial(t, sv.url(""), nil)
	for _, id := range []string{"a", "b", "c", "a"} {
		c.send(t, fmt.Sprintf(`{"type":"publish","id":%q,"data":1}`, id))
		c.nextOf(t, "ack")
	}
	assert.Equal(t, uint64(4), sv.s.Stats().Head, `"a" fell out of a window of 2`)
}

// The server sets from; a client cannot spoof it.
func TestPublishFromCannotBeSpoofed(t *testing.T) {
	sv := newServer(t, fanout.WithAuthenticate(authByHeader))
	c := dial(t, sv.url(""), user("mallory"))
	c.send(t, `{"type":"publish","id":"x","from":"alice","data":{"from":"alice"}}`)
	ev := c.nextOf(t, "event")
	assert.Equal(t, "mallory", ev.From)
}

// Acks are tracked per connection and per identity.
func TestClientAcksTracked(t *testing.T) {
	sv := newServer(t, fanout.WithAuthenticate(authByHeader))
	c := dial(t, sv.url(""), user("alice"))
	for i := 1; i <= 3; i++ {
		sv.publish(fmt.Sprint(i))
	}
	c.events(t, 3)
	c.send(t, `{"type":"ack","seq":2}`)
	c.send(t, `{"type":"ack","seq":1}`) // stale, ignored
	require.Eventually(t, func() bool {
		seq, ok := sv.s.Acked("alice")
		return ok && seq == 2
	}, 5*time.Second, 5*time.Millisecond)
	conns := sv.s.Conns()
	require.Len(t, conns, 1)
	assert.Equal(t, uint64(2), conns[0].Acked())
	assert.Equal(t, uint64(3), conns[0].Position())
	assert.Equal(t, "alice", conns[0].Identity().User)
	_, ok := sv.s.Acked("bob")
	assert.False(t, ok)
}

func TestPublishRateLimited(t *testing.T) {
	sv := newServer(t, fanout.WithPublishRate(0.001, 2))
	c := dial(t, sv.url(""), nil)
	for i := range 3 {
		c.send(t, fmt.Sprintf(`{"type":"publish","id":"%d","data":1}`, i))
	}
	assert.Equal(t, "ack", c.nextOf(t, "ack").Type)
	assert.Equal(t, "ack", c.nextOf(t, "ack").Type)
	e := c.nextOf(t, "error")
	assert.Equal(t, "rate_limited", e.Code)
	assert.Equal(t, "2", e.ID)
	assert.Equal(t, uint64(2), sv.s.Stats().Head)
}

// Past 100 refused publishes within a second the connection is closed with
// 1008, whether they come in one burst or as a steady flood.
func TestPublishFloodClosed(t *testing.T) {
	sv := newServer(t, fanout.WithPublishRate(0.001, 1))
	c := dial(t, sv.url(""), nil)
	frame := ""
	for i := range 150 {
		frame += fmt.Sprintf(`{"type":"publish","id":"%d","data":1}`+"\n", i)
	}
	c.send(t, frame)
	assert.Equal(t, 1008, int(c.closed(t)))
}

func TestValidateHook(t *testing.T) {
	validate := func(_ context.Context, c *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, errors.New("object expected")
		}
		if v["admin"] == true {
			return nil, fmt.Errorf("%w: admins only", fanout.ErrForbidden)
		}
		v["by"] = c.Identity().User
		return json.Marshal(v)
	}
	sv := newServer(t, fanout.WithAuthenticate(authByHeader), fanout.WithValidate(validate))
	c := dial(t, sv.url(""), user("alice"))

	c.send(t, `{"type":"publish","id":"1","data":[1]}`)
	e := c.nextOf(t, "error")
	assert.Equal(t, "invalid", e.Code)
	assert.Equal(t, "object expected", e.Message)
	assert.Equal(t, "1", e.ID)

	c.send(t, `{"type":"publish","id":"2","data":{"admin":true}}`)
	e = c.nextOf(t, "error")
	assert.Equal(t, "forbidden", e.Code)

	c.send(t, `{"type":"publish","id":"3","data":{"x":1}}`)
	ev := c.nextOf(t, "event")
	assert.JSONEq(t, `{"x":1,"by":"alice"}`, string(ev.Data))
	assert.Equal(t, uint64(1), ev.Seq, "refused publishes were not appended")
}

// A transform that makes the event larger than the limit is refused with
// too_large.
func TestValidateHookTooLarge(t *testing.T) {
	grow := func(context.Context, *fanout.Conn, json.RawMessage) (json.RawMessage, error) {
		return json.Marshal(string(bytesOf('x', 1024)))
	}
	sv := newServer(t, fanout.WithValidate(grow), fanout.WithMaxMessageSize(512))
	c := dial(t, sv.url(""), nil)
	c.send(t, `{"type":"publish","id":"1","data":1}`)
	assert.Equal(t, "too_large", c.nextOf(t, "error").Code)
}

func TestSteadyPublishFloodClosed(t *testing.T) {
	sv := newServer(t) // 50/s, burst 100
	c := dial(t, sv.url(""), nil)
	for i := range 300 { // 500 publishes/s: far over the rate, in small frames
		var b strings.Builder
		for j := range 5 {
			fmt.Fprintf(&b, `{"type":"publish","id":"%d-%d","data":1}`+"\n", i, j)
		}
		if c.ws.Write(context.Background(), websocket.MessageText, []byte(b.String())) != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, websocket.StatusPolicyViolation, c.closed(t))
}
