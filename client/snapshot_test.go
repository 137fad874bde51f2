package client_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// order records snapshots and events in the order the application gets
// them.
type order struct {
	mu  sync.Mutex
	log []string
}

func (o *order) add(s string) {
	o.mu.Lock()
	o.log = append(o.log, s)
	o.mu.Unlock()
}

func (o *order) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.log...)
}

func snapshotAt(seq uint64) fanout.Option {
	return fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
		return fanout.Snapshot{Seq: seq, Data: json.RawMessage(`{"at":` + itoa(int(seq)) + `}`)}, nil
	})
}

// The snapshot is handed to the application before the events after it,
// which start right after its seq, and Position is the snapshot's until
// the first of them is processed.
func TestSnapshotBeforeEvents(t *testing.T) {
	sess, srv := newSession(t, snapshotAt(3))
	publishN(t, sess, 5)
	var o order
	var pos uint64
	var self atomic.Pointer[client.Client]
	ready := make(chan struct{})
	c := dial(t, srv.WS("/"),
		client.WithOnSnapshot(func(s client.Snapshot) {
			o.add("snapshot " + itoa(int(s.Seq)) + " " + string(s.Data))
			require.Equal(t, sess.Epoch(), s.Epoch)
		}),
		client.WithHandler(func(ev client.Event) {
			if ev.Seq == 4 {
				<-ready
				pos, _ = self.Load().Position()
			}
			o.add("event " + itoa(int(ev.Seq)))
		}))
	self.Store(c)
	close(ready)
	publishN(t, sess, 1)
	require.Eventually(t, func() bool { return len(o.get()) == 4 }, waitFor, tick)
	require.Equal(t, []string{`snapshot 3 {"at":3}`, "event 4", "event 5", "event 6"}, o.get())
	require.Equal(t, uint64(3), pos, "position inside the first event's handler is the snapshot's")
	require.Equal(t, client.Stats{Snapshots: 1}, c.Stats())
}

// A client without WithOnSnapshot ignores snapshots and starts after the
// head, as with a server that provides none: old clients keep working.
func TestSnapshotIgnoredWithoutHandler(t *testing.T) {
	sess, srv := newSession(t, snapshotAt(3))
	publishN(t, sess, 5)
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle))
	seq, _ := c.Position()
	require.Equal(t, uint64(5), seq)
	publishN(t, sess, 2)
	col.waitLen(t, 2)
	requireContiguous(t, col.get(), 6, 7)
	require.Zero(t, c.Stats().Snapshots)
}

// After a refused resume the snapshot replaces the reset: the application
// gets the state and the events after it, and no WithOnReset call.
func TestSnapshotAfterRefusedResume(t *testing.T) {
	sess, srv := newSession(t, snapshotAt(4))
	publishN(t, sess, 4)
	var o order
	c := dial(t, srv.WS("/"),
		client.WithStartAfter(2, "an-epoch-long-gone"),
		client.WithOnReset(func(uint64, string) { o.add("reset") }),
		client.WithOnSnapshot(func(s client.Snapshot) { o.add("snapshot " + itoa(int(s.Seq))) }),
		client.WithHandler(func(ev client.Event) { o.add("event " + itoa(int(ev.Seq))) }))
	publishN(t, sess, 1)
	require.Eventually(t, func() bool { return len(o.get()) == 2 }, waitFor, tick)
	require.Equal(t, []string{"snapshot 4", "event 5"}, o.get())
	st := c.Stats()
	require.Equal(t, uint64(1), st.Resets)
	require.Equal(t, uint64(1), st.Snapshots)
	seq, epoch := c.Position()
	require.Equal(t, uint64(5), seq)
	require.Equal(t, sess.Epoch(), epoch)
}
