package client_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// fold is the state every party keeps of the stream: the last seq it
// reflects and a hash chained over every event's seq and data, so that
// two folds are equal only if they saw the same events in the same order.
type fold struct {
	Seq  uint64 `json:"seq"`
	Hash uint64 `json:"hash"`
}

func (f fold) apply(seq uint64, data []byte) fold {
	h := fnv.New64a()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], f.Hash)
	binary.BigEndian.PutUint64(b[8:], seq)
	h.Write(b[:])
	h.Write(data)
	return fold{Seq: seq, Hash: h.Sum64()}
}

// TestSnapshotAtomicityUnderLoad publishes 10,000 events a second while
// clients connect fresh, reset (a resume the server cannot serve) and
// resume at random, and connections are dropped under them. The host
// keeps its state by following the session and serves it as the snapshot.
// Each client's state, snapshot plus the events after it, must equal the
// reference fold of the whole stream up to the client's position: an
// event lost or repeated between a snapshot and the live stream would
// change the hash.
func TestSnapshotAtomicityUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test takes a few seconds")
	}
	const (
		rate    = 10_000 // events per second
		runFor  = 3 * time.Second
		workers = 6
	)
	var hostMu sync.Mutex
	var host fold // the host's state, by Follow
	sess, srv := newSession(t,
		fanout.WithHistory(20_000), // two seconds of events: room for the host to pause
		fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
			hostMu.Lock()
			f := host
			hostMu.Unlock()
			data, err := json.Marshal(f)
			return fanout.Snapshot{Seq: f.Seq, Data: data}, err
		}))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := sess.Follow(ctx, "", 0, func(evs []fanout.Event) error {
			hostMu.Lock()
			defer hostMu.Unlock()
			for _, e := range evs {
				host = host.apply(e.Seq, e.Data)
			}
			return nil
		})
		if ctx.Err() == nil {
			t.Errorf("follow: %v", err)
		}
	})

	// The reference: every event as published, by seq.
	var refMu sync.Mutex
	ref := []fold{{}} // ref[s] is the fold of events 1..s
	start := time.Now()
	var published int
	wg.Go(func() {
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for ctx.Err() == nil {
			<-tk.C
			due := int(time.Since(start).Seconds()*rate) - published
			for range due {
				data := fmt.Appendf(nil, `{"n":%d,"r":%d}`, published, rand.Uint32())
				seq, err := sess.Publish(context.Background(), data)
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				refMu.Lock()
				if seq != uint64(len(ref)) {
					t.Errorf("publish got seq %d, want %d", seq, len(ref))
				}
				ref = append(ref, ref[len(ref)-1].apply(seq, data))
				refMu.Unlock()
				published++
			}
		}
	})
	// Connections are dropped under the clients now and then: they
	// reconnect and resume on their own.
	wg.Go(func() {
		for ctx.Err() == nil {
			time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
			srv.KillSome(func(int) bool { return rand.IntN(4) == 0 })
		}
	})

	type result struct {
		kind    string
		state   fold
		pos     uint64
		epoch   string
		handled int
		stats   client.Stats
	}
	var resMu sync.Mutex
	var results []result
	for w := range workers {
		wg.Go(func() {
			var last *result // what this worker's previous client ended with
			for i := 0; ctx.Err() == nil; i++ {
				var state fold
				handled := 0
				kind := []string{"fresh", "reset", "resume"}[rand.IntN(3)]
				opts := []client.Option{
					client.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
					client.WithOnSnapshot(func(s client.Snapshot) {
						var f fold
						if err := json.Unmarshal(s.Data, &f); err != nil || f.Seq != s.Seq {
							t.Errorf("worker %d: bad snapshot %s at %d", w, s.Data, s.Seq)
						}
						state = f
						handled++
					}),
					client.WithOnReset(func(uint64, string) { t.Errorf("worker %d: reset without a snapshot", w) }),
					client.WithHandler(func(ev client.Event) {
						if ev.Seq != state.Seq+1 {
							t.Errorf("worker %d: event %d after state at %d", w, ev.Seq, state.Seq)
						}
						state = state.apply(ev.Seq, ev.Data)
						handled++
					}),
				}
				switch {
				case kind == "reset":
					opts = append(opts, client.WithStartAfter(1, "an-epoch-long-gone"))
				case kind == "resume" && last != nil:
					state = last.state
					opts = append(opts, client.WithStartAfter(last.state.Seq, last.epoch))
				default:
					kind = "fresh"
				}
				c, err := client.Dial(context.Background(), srv.WS("/"), opts...)
				if err != nil { // dropped during the handshake: the next one
					continue
				}
				select {
				case <-time.After(time.Duration(rand.IntN(300)) * time.Millisecond):
				case <-ctx.Done():
				}
				c.Close() // the handler has returned: state is settled
				pos, epoch := c.Position()
				r := result{kind: kind, state: state, pos: pos, epoch: epoch, stats: c.Stats(), handled: handled}
				resMu.Lock()
				results = append(results, r)
				resMu.Unlock()
				last = &r
			}
		})
	}
	time.Sleep(runFor)
	stop()
	wg.Wait()
	elapsed := time.Since(start)

	require.NotEmpty(t, results)
	counts := map[string]int{}
	var snapshots, resumedAfterDrop uint64
	for _, r := range results {
		counts[r.kind]++
		snapshots += r.stats.Snapshots
		resumedAfterDrop += r.stats.Reconnects
		if r.handled == 0 && r.kind != "resume" { // closed before its snapshot was handed over
			require.Zero(t, r.state)
			continue
		}
		require.Equal(t, sess.Epoch(), r.epoch)
		require.Equal(t, r.state.Seq, r.pos, "position is the state's")
		require.Less(t, r.state.Seq, uint64(len(ref)), "a client is ahead of every publish")
		require.Equal(t, ref[r.state.Seq], r.state, "%s client: state at seq %d differs from the reference fold", r.kind, r.state.Seq)
	}
	require.Positive(t, counts["reset"])
	require.Positive(t, counts["resume"])
	t.Logf("%d events in %v (%.0f/s); %d clients (%v), %d snapshots, %d reconnects after drops; each state equal to the reference",
		published, elapsed.Round(time.Millisecond), float64(published)/elapsed.Seconds(), len(results), counts, snapshots, resumedAfterDrop)
}
