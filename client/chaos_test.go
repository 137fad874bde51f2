package client_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// TestChaos runs many clients and publishers while connections are dropped
// at random, then checks the guarantee: every client saw every event exactly
// once, in order, and every client publish took effect exactly once.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos takes a few seconds")
	}
	const (
		clients          = 20
		clientPublishers = 4 // the first clients also publish
		serverPublishers = 2
		runFor           = 2 * time.Second
		kills            = 10
	)
	sess, srv := newSession(t, fanout.WithPublishRate(1e6, 1e6))

	type stream struct {
		mu     sync.Mutex
		events []client.Event
		bad    string // first order violation seen by the handler
	}
	streams := make([]*stream, clients)
	cs := make([]*client.Client, clients)
	for i := range clients {
		st := &stream{}
		streams[i] = st
		record := func(ev client.Event) {
			st.mu.Lock()
			defer st.mu.Unlock()
			if n := len(st.events); st.bad == "" && ev.Seq != uint64(n)+1 {
				st.bad = fmt.Sprintf("event %d has seq %d", n, ev.Seq)
			}
			st.events = append(st.events, ev)
		}
		opts := []client.Option{
			client.WithStartAfter(0, ""),
			client.WithBackoff(5*time.Millisecond, 100*time.Millisecond),
		}
		if i%5 == 4 { // some with a tiny buffer, to overflow and resume
			opts = append(opts, client.WithBuffer(32))
		}
		if i%2 == 0 { // half use a handler, half the Events channel
			opts = append(opts, client.WithHandler(record))
		}
		cs[i] = dial(t, srv.WS("/"), opts...)
		if i%2 == 1 {
			go func() {
				for ev := range cs[i].Events() { // until Close at cleanup
					record(ev)
				}
			}()
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	published := map[string]uint64{} // client payload -> seq returned by Publish
	serverCount := 0

	for p := range serverPublishers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				_, err := sess.Publish(t.Context(), fmt.Appendf(nil, `{"src":"s%d","i":%d}`, p, i))
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				serverCount++
				mu.Unlock()
			}
		})
	}
	for p := range clientPublishers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				payload := fmt.Sprintf(`{"src":"c%d","i":%d}`, p, i)
				seq, err := cs[p].Publish(t.Context(), []byte(payload))
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				published[payload] = seq
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		rnd := rand.New(rand.NewPCG(1, 2))
		for k := range kills {
			select {
			case <-stop:
				return
			case <-time.After(runFor / (kills + 1)):
			}
			if k%3 == 0 {
				srv.Kill()
			} else {
				srv.KillSome(func(int) bool { return rnd.IntN(3) == 0 })
			}
		}
	})

	time.Sleep(runFor)
	close(stop)
	wg.Wait()

	head := sess.Stats().Head
	require.Eventually(t, func() bool {
		for _, st := range streams {
			st.mu.Lock()
			n := len(st.events)
			st.mu.Unlock()
			if uint64(n) < head {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "every client catches up to head %d", head)

	var stats client.Stats
	for i, st := range streams {
		st.mu.Lock()
		events := st.events
		bad := st.bad
		st.mu.Unlock()
		require.Empty(t, bad, "client %d", i)
		requireContiguous(t, events, 1, head)

		seen := map[string]uint64{}
		servers := 0
		for _, ev := range events {
			var d struct {
				Src string
				I   int
			}
			require.NoError(t, json.Unmarshal(ev.Data, &d))
			if d.Src[0] == 's' {
				servers++
				continue
			}
			key := fmt.Sprintf(`{"src":"%s","i":%d}`, d.Src, d.I)
			_, dup := seen[key]
			require.False(t, dup, "client %d got %s twice", i, key)
			seen[key] = ev.Seq
		}
		assert.Equal(t, serverCount, servers, "client %d", i)
		assert.Equal(t, published, seen, "client %d: client publishes, each once, at the seq Publish returned", i)

		s := cs[i].Stats()
		assert.Zero(t, s.Resets, "client %d", i)
		stats.Reconnects += s.Reconnects
		stats.Duplicates += s.Duplicates
		stats.Resent += s.Resent
	}
	assert.Greater(t, stats.Reconnects, uint64(clients), "connections were dropped")
	t.Logf("head %d (%d client publishes), %+v", head, len(published), stats)
}
