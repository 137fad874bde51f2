package natslog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/natslog"
)

// countingObserver counts the shared-log events it is told of, by stream.
type countingObserver struct {
	fanout.BaseObserver
	mu     sync.Mutex
	gaps   map[string]int
	probes map[string]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{gaps: map[string]int{}, probes: map[string]int{}}
}

func (o *countingObserver) LogGapRepaired(stream string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gaps[stream]++
}

func (o *countingObserver) LogProbeRestarted(stream string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.probes[stream]++
}

func (o *countingObserver) get(m map[string]int, key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[key]
}

// follow follows l from after until ctx ends, as a session does: a
// Follow that fails is logged and followed again from where it stopped.
// It sends each seq to the returned channel; the first delivery waits
// for hold to close.
func follow(t *testing.T, ctx context.Context, l fanout.Log, epoch string, after uint64, hold <-chan struct{}) <-chan uint64 {
	got := make(chan uint64, 4096)
	var once sync.Once
	go func() {
		for ctx.Err() == nil {
			err := l.Follow(ctx, epoch, after, func(recs []fanout.Record) error {
				once.Do(func() { <-hold })
				for _, r := range recs {
					got <- r.Seq
					after = r.Seq
				}
				return nil
			})
			if ctx.Err() == nil {
				t.Logf("Follow: %v; following again", err)
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return got
}

// reach waits until got has delivered every seq up to want, in order.
func reach(t *testing.T, got <-chan uint64, next, want uint64) uint64 {
	t.Helper()
	for next <= want {
		select {
		case seq := <-got:
			require.Equal(t, next, seq)
			next++
		case <-time.After(10 * time.Second):
			t.Fatalf("the follower stopped at %d, want %d", next-1, want)
		}
	}
	return next
}

// A follower held up while more events come than its tail holds misses
// some: the next event shows the gap, the follower reads the missing ones
// from the stream, and the observer is told.
func TestObserverGapRepaired(t *testing.T) {
	opts := sharedOpts(t)
	opts.Probe = time.Hour // only the tail finds the gap
	obs := newCountingObserver()
	opts.Observer = obs
	_, js := connect(t, natsURL())
	st, err := natslog.New(context.Background(), js, opts)
	require.NoError(t, err)
	l := st.Log("gap")
	epoch, head, err := l.Head(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold := make(chan struct{})
	got := follow(t, ctx, l, epoch, head, hold)
	time.Sleep(100 * time.Millisecond) // subscribed

	const total = 1200 // more than the tail holds
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := range total / 8 {
				_, err := l.Append(context.Background(), "", "", fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i))
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // the subscription has handed on what it got
	close(hold)
	// Take what the tail held, until it falls quiet; the rest was dropped.
	next := head + 1
	for quiet := false; !quiet; {
		select {
		case seq := <-got:
			require.Equal(t, next, seq)
			next++
		case <-time.After(300 * time.Millisecond):
			quiet = true
		}
	}
	require.Less(t, next, head+total+1, "the tail dropped nothing")
	require.Zero(t, obs.get(obs.gaps, "gap"))
	_, err = l.Append(context.Background(), "", "", []byte(`"last"`))
	require.NoError(t, err)
	reach(t, got, next, head+total+1)
	// Told after the events it read are delivered.
	require.Eventually(t, func() bool { return obs.get(obs.gaps, "gap") == 1 }, 5*time.Second, time.Millisecond)
	require.Zero(t, obs.get(obs.probes, "gap"))
}

// A log whose connection reconnected under its Follow tells the observer
// at the next probe, once, and follows on.
func TestObserverProbeRestarted(t *testing.T) {
	opts := sharedOpts(t)
	opts.Probe = 100 * time.Millisecond
	obs := newCountingObserver()
	opts.Observer = obs
	nc, js := connect(t, natsURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	st, err := natslog.New(context.Background(), js, opts)
	require.NoError(t, err)
	l := st.Log("probe")
	epoch, head, err := l.Head(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold := make(chan struct{})
	close(hold)
	got := follow(t, ctx, l, epoch, head, hold)
	time.Sleep(300 * time.Millisecond) // subscribed, probing
	require.Zero(t, obs.get(obs.probes, "probe"))

	require.NoError(t, nc.ForceReconnect())
	require.Eventually(t, func() bool { return obs.get(obs.probes, "probe") == 1 }, 5*time.Second, 10*time.Millisecond)
	_, err = l.Append(context.Background(), "", "", []byte(`"a"`))
	require.NoError(t, err)
	reach(t, got, head+1, head+1)
	require.Equal(t, 1, obs.get(obs.probes, "probe"))
}
