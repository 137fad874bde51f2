package natslog_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/natslog"
)

// soakConfig is the size of TestSoak: NATSLOG_SOAK_CLIENTS clients (100
// by default) for NATSLOG_SOAK_DURATION (5 s by default). The full run:
//
//	cd natslog && NATSLOG_SOAK_CLIENTS=1000 NATSLOG_SOAK_DURATION=60s go test -run TestSoak -timeout 10m -v .
func soakConfig(t *testing.T) (clients int, d time.Duration) {
	clients, d = 100, 5*time.Second
	if v := os.Getenv("NATSLOG_SOAK_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		clients = n
	}
	if v := os.Getenv("NATSLOG_SOAK_DURATION"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err)
	}
	return clients, d
}

// Three nodes on one NATS server of the test's own, clients moving
// between them at random while publishers run on every node and the
// server is killed and restarted on its file store, or stopped for a
// while. At the end every client has every event of the log once, in
// order, without a reset; every acked publish is in the log at its seq.
func TestSoak(t *testing.T) {
	clients, d := soakConfig(t)
	srv := startNATS(t)
	opts := natslog.Options{Stream: "SOAK"}
	a := newAcked()
	var nodes []*node
	for range 3 {
		nodes = append(nodes, newRecordingNode(t, srv.url(), opts, "doc", a))
	}
	epoch := nodes[0].s.Epoch()

	type conn struct {
		mu sync.Mutex
		w  *watcher
		c  *client.Client
	}
	conns := make([]*conn, clients)
	for i := range conns {
		w := newWatcher()
		conns[i] = &conn{w: w, c: watch(t, nodes[i%len(nodes)].url(), w)}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range len(nodes) {
		wg.Go(func() { publishUntil(stop, a, fmt.Sprint(p), nodes[p].s) })
	}
	var moves, kills, stops atomic.Int64
	// Clients move: one closes, and connects to another node from where
	// it is, once that node has got there (a node behind a client would
	// answer its resume with a reset). Four movers at once.
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(rand.IntN(10)) * time.Millisecond):
				}
				c := conns[rand.IntN(len(conns))]
				to := nodes[rand.IntN(len(nodes))]
				c.mu.Lock()
				_ = c.c.Close()
				e, pos := c.w.position()
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					if st := to.s.Stats(); st.Epoch != e || st.Head >= pos {
						break
					}
				}
				c.c = watch(t, to.url(), c.w)
				c.mu.Unlock()
				moves.Add(1)
			}
		})
	}
	// NATS faults.
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3*time.Second + time.Duration(rand.IntN(2000))*time.Millisecond):
			}
			if i%2 == 0 {
				srv.kill()
				time.Sleep(200 * time.Millisecond)
				srv.start()
				kills.Add(1)
			} else {
				srv.stop()
				time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
				srv.cont()
				stops.Add(1)
			}
		}
	})
	time.Sleep(d)
	close(stop)
	wg.Wait()

	got, recs := logged(t, nodes[0].log)
	require.Equal(t, epoch, got, "the epoch changed")
	acked := checkAcked(t, a, got, recs)
	resets := 0
	for _, c := range conns {
		c.w.reached(t, got, uint64(len(recs)))
		c.w.got(t, got, recs)
		resets += c.w.resets
	}
	require.Zero(t, resets, "clients were reset")
	t.Logf("%d clients, %s: %d events (%d acked, %d publishes failed), %d moves, %d server kills, %d stops; every client has every event once, in order",
		clients, d, len(recs), acked, a.failed, moves.Load(), kills.Load(), stops.Load())
}
