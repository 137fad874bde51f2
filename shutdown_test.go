package fanout_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Shutdown sends what is pending, closes every connection with 1001, and
// afterwards refuses connections and publishes. goleak in TestMain checks
// that no goroutine survives.
func TestShutdownGoingAway(t *testing.T) {
	sv := newServer(t)
	cs := []*client{dial(t, sv.url(""), nil), dial(t, sv.url(""), nil)}
	for i := 1; i <= 100; i++ {
		sv.publish(fmt.Sprint(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, sv.s.Shutdown(ctx))
	for _, c := range cs {
		assert.Len(t, c.events(t, 100), 100, "pending events are flushed before closing")
		assert.Equal(t, websocket.StatusGoingAway, c.closed(t))
	}
	assert.Equal(t, 0, sv.s.Stats().Connections)
	_, err := sv.s.Publish(context.Background(), []byte(`1`))
	assert.ErrorIs(t, err, fanout.ErrClosed)
	assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, sv.url(""), nil))
}

// When the deadline passes before clients answer the close, Shutdown drops
// them and returns the context's error, leaving no goroutine behind.
func TestShutdownDeadline(t *testing.T) {
	sv := newServer(t)
	ctx := context.Background()
	// A client that never reads: its close handshake cannot complete.
	ws, _, err := websocket.Dial(ctx, sv.url(""), nil)
	require.NoError(t, err)
	defer ws.CloseNow()
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 1 }, 5*time.Second, time.Millisecond)

	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, sv.s.Shutdown(sctx), context.DeadlineExceeded)
	assert.Equal(t, 0, sv.s.Stats().Connections)
}

func TestCloseDropsEverything(t *testing.T) {
	sv := newServer(t)
	c := dial(t, sv.url(""), nil)
	require.NoError(t, sv.s.Close())
	c.closed(t)
	assert.Equal(t, 0, sv.s.Stats().Connections)
	_, err := sv.s.Publish(context.Background(), []byte(`1`))
	assert.ErrorIs(t, err, fanout.ErrClosed)
}
