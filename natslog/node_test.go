package natslog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/natslog"
)

// sharedOpts are the options of a fresh stream on the shared server.
func sharedOpts(t *testing.T) natslog.Options {
	_, js := connect(t, natsURL())
	return natslog.Options{Stream: uniqueStream(t, js), Window: 1000}
}

// Two nodes on one stream: server and client publishes on both reach
// every client on either node in one order; a client moves to the other
// node and resumes with nothing lost or repeated; a retried client publish
// on the other node gets its original seq.
func TestTwoNodes(t *testing.T) {
	opts := sharedOpts(t)
	a, b := newNode(t, natsURL(), opts, "doc"), newNode(t, natsURL(), opts, "doc")
	require.Equal(t, a.s.Epoch(), b.s.Epoch())
	wa, wb := newWatcher(), newWatcher()
	ca, cb := watch(t, a.url(), wa), watch(t, b.url(), wb)

	const n = 60
	var wg sync.WaitGroup
	for i := range n / 3 {
		wg.Go(func() {
			_, err := a.s.Publish(context.Background(), fmt.Appendf(nil, `{"a":%d}`, i))
			require.NoError(t, err)
		})
		wg.Go(func() {
			_, err := b.s.Publish(context.Background(), fmt.Appendf(nil, `{"b":%d}`, i))
			require.NoError(t, err)
		})
		wg.Go(func() {
			_, err := ca.Publish(context.Background(), fmt.Appendf(nil, `{"client":%d}`, i))
			require.NoError(t, err)
		})
	}
	wg.Wait()
	epoch := a.s.Epoch()
	wa.reached(t, epoch, n)
	wb.reached(t, epoch, n)
	sameOrder(t, wa, wb)

	// The client on a moves to b, resuming where it is.
	require.NoError(t, ca.Close())
	_, err := cb.Publish(context.Background(), []byte(`{"while":"moving"}`))
	require.NoError(t, err)
	watch(t, b.url(), wa)
	wa.reached(t, epoch, n+1)
	sameOrder(t, wa, wb)
	require.Zero(t, wa.resets)

	// A retry of a client publish, on the other node, is not appended
	// twice.
	first, err := a.log.Append(context.Background(), "alice", "once", []byte(`{"x":1}`))
	require.NoError(t, err)
	again, err := b.log.Append(context.Background(), "alice", "once", []byte(`{"x":1}`))
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, first.Seq, again.Seq)
}

// A node restarted (a new store and session on the same stream) keeps the
// epoch: a client resumes on it without a reset.
func TestNodeRestartKeepsEpoch(t *testing.T) {
	opts := sharedOpts(t)
	a := newNode(t, natsURL(), opts, "doc")
	w := newWatcher()
	c := watch(t, a.url(), w)
	for i := range 5 {
		_, err := a.s.Publish(context.Background(), fmt.Appendf(nil, `{"i":%d}`, i))
		require.NoError(t, err)
	}
	epoch := a.s.Epoch()
	w.reached(t, epoch, 5)
	require.NoError(t, c.Close())
	require.NoError(t, a.s.Close())

	b := newNode(t, natsURL(), opts, "doc")
	require.Equal(t, epoch, b.s.Epoch())
	_, err := b.s.Publish(context.Background(), []byte(`{"after":"restart"}`))
	require.NoError(t, err)
	watch(t, b.url(), w)
	w.reached(t, epoch, 6)
	require.Zero(t, w.resets)
}

// The tail alone (no probe in the test's time) delivers in order; a
// follower slower than the tail, whose subscription drops messages, still
// gets every event once, in order, from the stream.
func TestFollowTailAndSlowFollower(t *testing.T) {
	opts := sharedOpts(t)
	opts.Probe = time.Hour
	_, js := connect(t, natsURL())
	st, err := natslog.New(context.Background(), js, opts)
	require.NoError(t, err)
	l := st.Log("tail")
	epoch, head, err := l.Head(context.Background())
	require.NoError(t, err)

	const total = 3000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		next uint64
		err  error
	}
	follow := func(slow time.Duration) chan result {
		done := make(chan result, 1)
		go func() {
			next := head + 1
			err := l.Follow(ctx, epoch, head, func(recs []fanout.Record) error {
				for _, r := range recs {
					if r.Seq != next {
						return fmt.Errorf("seq %d, want %d", r.Seq, next)
					}
					next++
				}
				time.Sleep(slow)
				if next > head+total {
					return errDone
				}
				return nil
			})
			done <- result{next, err}
		}()
		return done
	}
	fast, slow := follow(0), follow(20*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // both subscribed
	_, pjs := connect(t, natsURL())
	pst, err := natslog.New(context.Background(), pjs, opts)
	require.NoError(t, err)
	pl := pst.Log("tail")
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := range total / 8 {
				_, err := pl.Append(context.Background(), "", "", fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i))
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, done := range []chan result{fast, slow} {
		select {
		case r := <-done:
			require.ErrorIs(t, r.err, errDone)
			require.Equal(t, head+total+1, r.next)
		case <-time.After(60 * time.Second):
			t.Fatal("a follower did not get every event")
		}
	}
}

var errDone = errors.New("done")

// A retry of a client publish that is the session's last event, from a
// handle that last saw the session before it (its expected last subject
// sequence is stale, which one server checks before the dedup), gets the
// original seq and appends nothing.
func TestRetryAfterConflict(t *testing.T) {
	opts := sharedOpts(t)
	open := func() fanout.Log {
		_, js := connect(t, natsURL())
		st, err := natslog.New(context.Background(), js, opts)
		require.NoError(t, err)
		return st.Log("doc")
	}
	a, b := open(), open()
	_, err := a.Append(context.Background(), "", "", []byte(`{"first":true}`))
	require.NoError(t, err)
	orig, err := b.Append(context.Background(), "alice", "p1", []byte(`{"x":1}`))
	require.NoError(t, err)
	retry, err := a.Append(context.Background(), "alice", "p1", []byte(`{"x":1}`))
	require.NoError(t, err)
	require.Equal(t, fanout.Appended{Epoch: orig.Epoch, Seq: orig.Seq, Duplicate: true}, retry)
	_, head, err := a.Head(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(2), head)
}
