package redislog_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/redislog"
)

// countingObserver counts the shared-log events it is told of, by stream
// (and op, for errors).
type countingObserver struct {
	fanout.BaseObserver
	mu     sync.Mutex
	gaps   map[string]int
	probes map[string]int
	errs   map[string]int // stream + " " + op
}

func newCountingObserver() *countingObserver {
	return &countingObserver{gaps: map[string]int{}, probes: map[string]int{}, errs: map[string]int{}}
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

func (o *countingObserver) LogError(stream, op string, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs[stream+" "+op]++
}

func (o *countingObserver) get(m map[string]int, key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[key]
}

// An event committed to the stream but never published leaves a gap in
// the follower's pub/sub tail: the next event shows it, the follower reads
// the missing one from the stream and the observer is told, once.
func TestObserverGapRepaired(t *testing.T) {
	rp := startRedis(t, false)
	c := newClient(t, rp.addr)
	obs := newCountingObserver()
	st := newStore(t, c, redislog.Options{Observer: obs, CheckInterval: time.Hour})
	l := st.Log("doc")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	epoch, head, err := l.Head(ctx)
	require.NoError(t, err)
	require.Zero(t, head)

	got := make(chan fanout.Record, 16)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, epoch, 0, func(recs []fanout.Record) error {
			for _, r := range recs {
				got <- r
			}
			return nil
		})
	}()
	next := func() fanout.Record {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("the follower got nothing")
			return fanout.Record{}
		}
	}
	time.Sleep(100 * time.Millisecond) // subscribed
	_, err = l.Append(ctx, "", "", []byte(`"a"`))
	require.NoError(t, err)
	require.Equal(t, `"a"`, string(next().Data))
	require.Zero(t, obs.get(obs.gaps, "doc"), "no gap on the plain tail")

	// Commit seq 2 as the append script does, without the PUBLISH.
	const silent = `local s = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('XADD', KEYS[2], string.format('%d-0', s), 'f', '', 'i', '', 'd', ARGV[1])
return s`
	s, err := rp.do("EVAL", silent, "2", "{fanout:doc}:m", "{fanout:doc}:s", `"b"`).AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 2, s)
	_, err = l.Append(ctx, "", "", []byte(`"c"`))
	require.NoError(t, err)
	r := next()
	require.Equal(t, uint64(2), r.Seq)
	require.Equal(t, `"b"`, string(r.Data))
	require.Equal(t, `"c"`, string(next().Data))
	require.Equal(t, 1, obs.get(obs.gaps, "doc"))
	require.Zero(t, obs.get(obs.probes, "fanout"))

	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// A pub/sub connection killed under the store is reported as an error of
// op "pubsub" and a restart of the probe, under the store's prefix, and
// the store follows again afterwards.
func TestObserverProbeRestarted(t *testing.T) {
	rp := startRedis(t, false)
	c := newClient(t, rp.addr)
	obs := newCountingObserver()
	st := newStore(t, c, redislog.Options{Prefix: "p1", Observer: obs, ProbeInterval: 100 * time.Millisecond})
	l := st.Log("doc")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	epoch, _, err := l.Head(ctx)
	require.NoError(t, err)
	got := make(chan uint64, 16)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, epoch, 0, func(recs []fanout.Record) error {
			for _, r := range recs {
				got <- r.Seq
			}
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond) // subscribed, probing
	require.Zero(t, obs.get(obs.probes, "p1"))

	n, err := rp.do("CLIENT", "KILL", "TYPE", "pubsub").AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Eventually(t, func() bool {
		return obs.get(obs.probes, "p1") == 1 && obs.get(obs.errs, "p1 pubsub") >= 1
	}, 5*time.Second, 10*time.Millisecond)

	_, err = l.Append(ctx, "", "", []byte(`"a"`))
	require.NoError(t, err)
	select {
	case seq := <-got:
		require.EqualValues(t, 1, seq)
	case <-time.After(5 * time.Second):
		t.Fatal("the follower got nothing after the reconnect")
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
