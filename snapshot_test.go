package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// A client without a position gets its welcome, the snapshot, then
// exactly the events after the snapshot's seq, even when the snapshot
// lags the head, and live events after them.
func TestSnapshotThenEventsAfterIt(t *testing.T) {
	sv := newServer(t, fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
		return fanout.Snapshot{Seq: 3, Data: json.RawMessage(`{"sum": 6}`)}, nil
	}))
	for i := range 5 {
		sv.publish(fmt.Sprint(i + 1))
	}
	c := dial(t, sv.url(""), nil)
	require.False(t, c.welcome.Resumed)
	require.Equal(t, uint64(5), c.welcome.Head)
	snap := c.next(t)
	require.Equal(t, "snapshot", snap.Type)
	require.Equal(t, uint64(3), snap.Seq)
	require.Equal(t, c.welcome.Epoch, snap.Epoch)
	require.JSONEq(t, `{"sum":6}`, string(snap.Data))
	sv.publish(`6`)
	for i, e := range c.events(t, 3) {
		require.Equal(t, uint64(4+i), e.Seq)
	}
}

// Who gets a snapshot: every connection whose start is not a served
// resume.
func TestSnapshotWhoGetsOne(t *testing.T) {
	for _, tc := range []struct {
		name     string
		query    string // %s is the epoch
		resumed  bool
		snapshot bool
	}{
		{"no position", "", false, true},
		{"resume served", "after=8&epoch=%s", true, false},
		{"resume in the current epoch", "after=7", true, false},
		{"resume of another epoch", "after=8&epoch=gone", false, true},
		{"resume out of the window", "after=2&epoch=%s", false, true},
		{"resume beyond the head", "after=11&epoch=%s", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			sv := newServer(t, fanout.WithHistory(4), fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
				calls.Add(1)
				return fanout.Snapshot{Seq: 10, Data: json.RawMessage(`"state"`)}, nil
			}))
			for range 10 {
				sv.publish(`1`)
			}
			query := tc.query
			if strings.Contains(query, "%s") {
				query = fmt.Sprintf(query, sv.s.Epoch())
			}
			c := dial(t, sv.url(query), nil)
			require.Equal(t, tc.resumed, c.welcome.Resumed)
			if tc.snapshot {
				require.Equal(t, "snapshot", c.next(t).Type)
				require.Equal(t, int32(1), calls.Load())
			} else {
				require.Equal(t, int32(0), calls.Load(), "no snapshot taken for a served resume")
			}
			sv.publish(`2`)
			e := c.nextOf(t, "event")
			if tc.resumed {
				require.Less(t, e.Seq, uint64(11))
			} else {
				require.Equal(t, uint64(11), e.Seq, "right after the snapshot, nothing before it")
			}
		})
	}
}

// A snapshot function that is slow does not hold the session: publishes
// go on while it runs, and the client gets exactly the events after the
// seq the snapshot reflects, the ones committed during the call included.
func TestSnapshotSlowWhilePublishing(t *testing.T) {
	var seq atomic.Uint64 // the host's state: the last seq it has seen
	entered, release := make(chan struct{}), make(chan struct{})
	sv := newServer(t, fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
		s := fanout.Snapshot{Seq: seq.Load(), Data: json.RawMessage(fmt.Sprint(seq.Load()))}
		close(entered)
		<-release
		return s, nil
	}))
	for range 5 {
		seq.Store(sv.publish(`1`))
	}
	done := make(chan *client)
	go func() { done <- dialRaw(t, sv.url(""), nil, false) }()
	<-entered
	for range 10 { // committed while the snapshot is taken
		sv.publish(`2`)
	}
	close(release)
	c := <-done
	require.Equal(t, "welcome", c.next(t).Type)
	snap := c.next(t)
	require.Equal(t, "snapshot", snap.Type)
	require.Equal(t, uint64(5), snap.Seq)
	for i, e := range c.events(t, 10) {
		require.Equal(t, uint64(6+i), e.Seq)
	}
}

// When no snapshot can be served the connection is closed with 1011 (the
// client reconnects with backoff), and the session goes on.
func TestSnapshotFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fn    func(context.Context) (fanout.Snapshot, error)
		calls int32 // how often fn is asked
	}{
		{"error", func(context.Context) (fanout.Snapshot, error) { return fanout.Snapshot{}, errors.New("db down") }, 1},
		{"panic", func(context.Context) (fanout.Snapshot, error) { panic("bug") }, 1},
		{"not JSON", func(context.Context) (fanout.Snapshot, error) {
			return fanout.Snapshot{Seq: 10, Data: json.RawMessage(`{"a":`)}, nil
		}, 1},
		{"no data", func(context.Context) (fanout.Snapshot, error) { return fanout.Snapshot{Seq: 10}, nil }, 1},
		{"older than the window", func(context.Context) (fanout.Snapshot, error) {
			return fanout.Snapshot{Seq: 2, Data: json.RawMessage(`1`)}, nil
		}, 3},
		{"another epoch", func(context.Context) (fanout.Snapshot, error) {
			return fanout.Snapshot{Seq: 10, Epoch: "old", Data: json.RawMessage(`1`)}, nil
		}, 3},
		{"beyond the head", func(context.Context) (fanout.Snapshot, error) {
			return fanout.Snapshot{Seq: 11, Data: json.RawMessage(`1`)}, nil
		}, 3}, // in memory, nothing will bring seq 11 but a publish
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			sv := newServer(t, fanout.WithHistory(4), fanout.WithWriteTimeout(300*time.Millisecond),
				fanout.WithSnapshot(func(ctx context.Context) (fanout.Snapshot, error) {
					calls.Add(1)
					return tc.fn(ctx)
				}))
			for range 10 {
				sv.publish(`1`)
			}
			c := dialRaw(t, sv.url(""), nil, false)
			require.Equal(t, websocket.StatusInternalError, c.closed(t))
			require.Equal(t, tc.calls, calls.Load())
			require.Equal(t, uint64(11), sv.publish(`1`))
			require.Equal(t, 0, sv.s.Stats().Connections)
		})
	}
}

// gatedLog holds its followers until the gate opens: a node that has not
// yet received what the log already committed.
type gatedLog struct {
	fanout.Log
	gate chan struct{}
}

func (g *gatedLog) Follow(ctx context.Context, epoch string, after uint64, fn func([]fanout.Record) error) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Log.Follow(ctx, epoch, after, fn)
}

// On a shared log, a snapshot of a seq this node has not received yet
// (the host's state came from the log, ahead of the node's window) is
// served once the window has it.
func TestSnapshotAheadOfTheNode(t *testing.T) {
	mem, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	l := &gatedLog{Log: mem, gate: make(chan struct{})}
	asked := make(chan struct{}, 1)
	b := newNode(t, l, fanout.WithSnapshot(func(ctx context.Context) (fanout.Snapshot, error) {
		_, head, err := mem.Head(ctx) // the host's state is as of the log's head
		select {
		case asked <- struct{}{}:
		default:
		}
		return fanout.Snapshot{Seq: head, Data: json.RawMessage(fmt.Sprint(head))}, err
	}))
	for range 3 {
		_, err := mem.Append(context.Background(), "", "", []byte(`1`))
		require.NoError(t, err)
	}
	done := make(chan *client)
	go func() { done <- dialRaw(t, b.url(""), nil, false) }()
	<-asked
	require.Zero(t, b.s.Stats().Head, "the node has not received the events")
	close(l.gate)
	c := <-done
	require.True(t, c.next(t).Snapshot)
	require.Equal(t, uint64(3), c.next(t).Seq)
	_, err = mem.Append(context.Background(), "", "", []byte(`2`))
	require.NoError(t, err)
	require.Equal(t, uint64(4), c.nextOf(t, "event").Seq)
}
