package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// downLog is a memory log whose next appends fail, as a shared log whose
// backend cannot be reached; commitFirst makes the first failing one
// commit nonetheless, as when the backend answers after the timeout.
type downLog struct {
	fanout.Log
	fails       atomic.Int32
	commitFirst atomic.Bool
}

func (l *downLog) Append(ctx context.Context, from, id string, data []byte) (fanout.Appended, error) {
	if l.fails.Add(-1) >= 0 {
		if l.commitFirst.CompareAndSwap(true, false) {
			_, _ = l.Log.Append(ctx, from, id, data)
		}
		return fanout.Appended{}, errors.New("backend timed out")
	}
	return l.Log.Append(ctx, from, id, data)
}

// A publish the server could not commit (error "unavailable") is sent
// again with its id until it is; one committed despite the error is not
// appended twice.
func TestPublishRetriedWhileUnavailable(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run(map[bool]string{false: "not committed", true: "committed after all"}[committed], func(t *testing.T) {
			mem, err := fanout.NewMemoryLog(100, 100)
			require.NoError(t, err)
			l := &downLog{Log: mem}
			sess, srv := newSession(t, fanout.WithLog(l))
			require.Eventually(t, func() bool { return sess.Epoch() != "" }, 5*time.Second, time.Millisecond)
			var got collector
			c := dial(t, srv.WS("/"), client.WithHandler(got.handle))
			l.fails.Store(3)
			l.commitFirst.Store(committed)
			seq, err := c.Publish(t.Context(), []byte(`{"x":1}`))
			require.NoError(t, err)
			require.Equal(t, uint64(1), seq)
			require.Equal(t, uint64(3), c.Stats().Unavailable)
			_, head, err := mem.Head(t.Context())
			require.NoError(t, err)
			require.Equal(t, uint64(1), head, "appended once")
			got.waitLen(t, 1)
		})
	}
}
