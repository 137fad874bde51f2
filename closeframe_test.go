package fanout_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

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
