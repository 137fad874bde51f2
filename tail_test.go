package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// follower runs Session.Follow in a goroutine and collects what it is
// given, checking that seqs come once each and in order.
type follower struct {
	mu     sync.Mutex
	events []fanout.Event
	bad    error
	done   chan error
	cancel context.CancelFunc
	gate   chan struct{} // when set, the first batch waits on it
	inside chan struct{} // closed when the first batch is being handled
}

func follow(t *testing.T, s *fanout.Session, epoch string, after uint64, gate chan struct{}) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{done: make(chan error, 1), cancel: cancel, gate: gate, inside: make(chan struct{})}
	next := after + 1
	go func() {
		f.done <- s.Follow(ctx, epoch, after, func(evs []fanout.Event) error {
			if f.gate != nil {
				close(f.inside)
				<-f.gate
				f.gate = nil
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, e := range evs {
				if e.Seq != next && f.bad == nil {
					f.bad = fmt.Errorf("got seq %d, want %d", e.Seq, next)
				}
				next = e.Seq + 1
				f.events = append(f.events, e)
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		f.wait(t)
	})
	return f
}

// upto waits until the follower has every event up to seq.
func (f *follower) upto(t *testing.T, seq uint64) []fanout.Event {
	t.Helper()
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.events) > 0 && f.events[len(f.events)-1].Seq >= seq
	}, 5*time.Second, time.Millisecond, "follower did not reach %d", seq)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NoError(t, f.bad)
	return append([]fanout.Event(nil), f.events...)
}

// wait returns what Follow returned.
func (f *follower) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err
		return err
	case <-time.After(5 * time.Second):
		require.FailNow(t, "Follow did not return")
		return nil
	}
}

// A follower gets the retained events, then live ones as they are
// committed, server and client publishes alike, once each and in order.
func TestFollowReplayThenLive(t *testing.T) {
	sv := newServer(t)
	for i := range 5 {
		sv.publish(fmt.Sprintf(`{"n":%d}`, i+1))
	}
	f := follow(t, sv.s, sv.s.Epoch(), 0, nil)
	require.Len(t, f.upto(t, 5), 5)

	c := dial(t, sv.url(""), nil)
	c.send(t, `{"type":"publish","id":"p1","data":{"n":6}}`)
	require.Equal(t, uint64(6), c.nextOf(t, "ack").Seq)
	sv.publish(`{"n":7}`)

	evs := f.upto(t, 7)
	require.Len(t, evs, 7)
	for i, e := range evs {
		require.Equal(t, uint64(i+1), e.Seq)
		require.Equal(t, sv.s.Epoch(), e.Epoch)
		require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i+1), string(e.Data))
	}
	require.Equal(t, "p1", evs[5].ID)
	require.Equal(t, "", evs[5].From) // the anonymous identity
	require.Empty(t, evs[6].ID)

	f.cancel()
	require.ErrorIs(t, f.wait(t), context.Canceled)
}

// Positions that cannot be served are refused with ErrGone, at once.
func TestFollowGone(t *testing.T) {
	sv := newServer(t, fanout.WithHistory(4))
	for range 10 {
		sv.publish(`1`)
	}
	for _, tc := range []struct {
		name  string
		epoch string
		after uint64
	}{
		{"other epoch", "not-this-one", 8},
		{"beyond head", "", 11},
		{"trimmed", "", 5},
		{"trimmed, from the start", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sv.s.Follow(context.Background(), tc.epoch, tc.after, func([]fanout.Event) error {
				return errors.New("no event expected")
			})
			require.ErrorIs(t, err, fanout.ErrGone)
		})
	}
	// The oldest servable position still works.
	ctx, cancel := context.WithCancel(context.Background())
	var got []uint64
	err := sv.s.Follow(ctx, "", 6, func(evs []fanout.Event) error {
		for _, e := range evs {
			got = append(got, e.Seq)
		}
		if len(got) == 4 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []uint64{7, 8, 9, 10}, got)
}

// A follower that falls out of the window while its function runs gets
// every event once and in order up to where it fell behind, then ErrGone:
// nothing is buffered for it, and publishers never wait for it.
func TestFollowFellBehind(t *testing.T) {
	sv := newServer(t, fanout.WithHistory(8))
	sv.publish(`0`)
	gate := make(chan struct{})
	f := follow(t, sv.s, "", 0, gate)
	<-f.inside
	for i := range 20 { // publishing does not wait for the blocked follower
		sv.publish(fmt.Sprint(i + 1))
	}
	close(gate)
	err := f.wait(t)
	require.ErrorIs(t, err, fanout.ErrGone)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NoError(t, f.bad)
	require.Equal(t, uint64(1), f.events[len(f.events)-1].Seq, "only the batch it was given before falling behind")
}

// After Shutdown a follower gets what was committed before, then
// ErrClosed.
func TestFollowClosed(t *testing.T) {
	sv := newServer(t)
	f := follow(t, sv.s, "", 0, nil)
	for range 3 {
		sv.publish(`1`)
	}
	require.NoError(t, sv.s.Shutdown(context.Background()))
	require.ErrorIs(t, f.wait(t), fanout.ErrClosed)
	require.Len(t, f.upto(t, 3), 3)

	// A follower that starts after the close gets the same, then ErrClosed.
	n := 0
	err := sv.s.Follow(context.Background(), "", 0, func(evs []fanout.Event) error { n += len(evs); return nil })
	require.ErrorIs(t, err, fanout.ErrClosed)
	require.Equal(t, 3, n)
}

// The function's error ends Follow and is returned as it is.
func TestFollowFunctionError(t *testing.T) {
	sv := newServer(t)
	sv.publish(`1`)
	stop := errors.New("stop")
	err := sv.s.Follow(context.Background(), "", 0, func([]fanout.Event) error { return stop })
	require.Same(t, stop, err)
}

// On a shared log a follower on one node sees what every node publishes,
// and across a restart of its node (a new session on the same log, with a
// window too small to hold the follower's position, which is then read
// from the log) it goes on with every event once and in order.
func TestFollowSharedLogAcrossRestart(t *testing.T) {
	l, err := fanout.NewMemoryLog(1000, 1000)
	require.NoError(t, err)
	a := newNode(t, l)
	b, err := fanout.NewSession("shared", fanout.WithLog(l), fanout.WithHistory(4))
	require.NoError(t, err)
	f := follow(t, b, "", 0, nil)
	for i := range 10 {
		_, err := a.s.Publish(context.Background(), fmt.Appendf(nil, "%d", i+1))
		require.NoError(t, err)
	}
	first := f.upto(t, 10)
	require.NoError(t, b.Close())
	require.ErrorIs(t, f.wait(t), fanout.ErrClosed)

	for i := range 20 { // published while the follower's node is down
		_, err := a.s.Publish(context.Background(), fmt.Appendf(nil, "%d", i+11))
		require.NoError(t, err)
	}
	restarted, err := fanout.NewSession("shared", fanout.WithLog(l), fanout.WithHistory(4))
	require.NoError(t, err)
	t.Cleanup(func() { _ = restarted.Close() })
	last := first[len(first)-1]
	g := follow(t, restarted, last.Epoch, last.Seq, nil)
	for i := range 5 {
		_, err := a.s.Publish(context.Background(), fmt.Appendf(nil, "%d", i+31))
		require.NoError(t, err)
	}
	rest := g.upto(t, 35)
	all := append(first, rest...)
	require.Len(t, all, 35)
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Seq)
		require.Equal(t, fmt.Sprint(i+1), string(e.Data))
	}
}

// On a shared log, a position the log has but this node has not received
// yet is waited for; one beyond the log's head is gone.
func TestFollowSharedLogAheadOfTheNode(t *testing.T) {
	mem, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	l := &gatedLog{Log: mem, gate: make(chan struct{})}
	b := newNode(t, l)
	for range 3 {
		_, err := mem.Append(context.Background(), "", "", []byte(`1`))
		require.NoError(t, err)
	}
	epoch, _, err := mem.Head(context.Background())
	require.NoError(t, err)

	err = b.s.Follow(context.Background(), epoch, 4, func([]fanout.Event) error { return errors.New("no event expected") })
	require.ErrorIs(t, err, fanout.ErrGone)

	f := follow(t, b.s, epoch, 2, nil)
	require.Zero(t, b.s.Stats().Head, "the node has not received the events")
	close(l.gate)
	evs := f.upto(t, 3)
	require.Len(t, evs, 1)
	require.Equal(t, uint64(3), evs[0].Seq)
}
