package redislog_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/redislog"
)

// node is one server process's worth: its own Redis client and store, a
// session on the store's log, and an HTTP server.
type node struct {
	client rueidis.Client
	store  *redislog.Store
	sess   *fanout.Session
	srv    *httptest.Server
}

func (n *node) url() string { return "ws" + strings.TrimPrefix(n.srv.URL, "http") }

// stop shuts the node down, as a process exiting would.
func (n *node) stop() {
	n.srv.CloseClientConnections()
	_ = n.sess.Close()
	n.srv.Close()
	n.store.Close()
	n.client.Close()
}

// startNode starts a node on the Redis at addr.
func startNode(t *testing.T, addr string, opts redislog.Options, sessOpts ...fanout.Option) *node {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	require.NoError(t, err)
	st, err := redislog.New(c, opts)
	require.NoError(t, err)
	sess, err := fanout.NewSession("doc", append([]fanout.Option{fanout.WithLog(st.Log("doc"))}, sessOpts...)...)
	require.NoError(t, err)
	n := &node{client: c, store: st, sess: sess, srv: httptest.NewServer(sess)}
	var once sync.Once
	t.Cleanup(func() { once.Do(n.stop) })
	require.Eventually(t, func() bool { return sess.Epoch() != "" }, 10*time.Second, 5*time.Millisecond)
	return n
}

// recorder is a client's view of the stream: the events it processed and
// the resets it was told of, in order.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
	resets []string // the epoch each reset moved to
}

func (r *recorder) handle(ev client.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) reset(head uint64, epoch string) {
	r.mu.Lock()
	r.resets = append(r.resets, epoch)
	r.mu.Unlock()
}

func (r *recorder) last() (uint64, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return 0, ""
	}
	ev := r.events[len(r.events)-1]
	return ev.Seq, ev.Epoch
}

func (r *recorder) snapshot() ([]client.Event, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Event(nil), r.events...), append([]string(nil), r.resets...)
}

// dialRec connects a client recording into r.
func dialRec(t *testing.T, url string, r *recorder, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, append([]client.Option{
		client.WithHandler(r.handle), client.WithOnReset(r.reset),
		client.WithBackoff(10*time.Millisecond, 200*time.Millisecond),
	}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor waits until r has processed seq in epoch (or any later seq).
func waitFor(t *testing.T, r *recorder, epoch string, seq uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, e := r.last()
		return e == epoch && s >= seq
	}, 30*time.Second, 5*time.Millisecond, "waiting for seq %d in epoch %s", seq, epoch)
}

// Two nodes publishing into one session at once, server side and client
// side: every client on either node gets the same events in the same
// order, each once.
func TestTwoNodesOneOrder(t *testing.T) {
	needRedis(t, sharedAddr)
	prefix := uniquePrefix()
	t.Cleanup(func() { deletePrefix(t, newClient(t, sharedAddr), prefix) })
	opts := redislog.Options{Prefix: prefix}
	a, b := startNode(t, sharedAddr, opts), startNode(t, sharedAddr, opts)
	require.Equal(t, a.sess.Epoch(), b.sess.Epoch())

	var ra, rb recorder
	ca := dialRec(t, a.url(), &ra)
	cb := dialRec(t, b.url(), &rb)
	const each = 50
	var wg sync.WaitGroup
	for i, n := range []*node{a, b} {
		wg.Go(func() {
			for j := range each {
				_, err := n.sess.Publish(context.Background(), fmt.Appendf(nil, `{"server":%d,"j":%d}`, i, j))
				require.NoError(t, err)
			}
		})
	}
	for i, c := range []*client.Client{ca, cb} {
		wg.Go(func() {
			for j := range each {
				_, err := c.Publish(context.Background(), fmt.Appendf(nil, `{"client":%d,"j":%d}`, i, j))
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	epoch := a.sess.Epoch()
	waitFor(t, &ra, epoch, 4*each)
	waitFor(t, &rb, epoch, 4*each)
	ea, _ := ra.snapshot()
	eb, _ := rb.snapshot()
	require.Len(t, ea, 4*each)
	require.Len(t, eb, 4*each)
	seen := map[string]bool{}
	for i := range ea {
		require.Equal(t, uint64(i+1), ea[i].Seq)
		require.Equal(t, ea[i].Seq, eb[i].Seq)
		require.JSONEq(t, string(ea[i].Data), string(eb[i].Data), "seq %d differs between the nodes", i+1)
		require.False(t, seen[string(ea[i].Data)], "%s delivered twice", ea[i].Data)
		seen[string(ea[i].Data)] = true
	}
}

// A client moves from one node to the other and resumes with nothing lost
// or repeated; a node restart keeps the epoch, and its clients resume.
func TestMoveAndRestart(t *testing.T) {
	needRedis(t, sharedAddr)
	prefix := uniquePrefix()
	t.Cleanup(func() { deletePrefix(t, newClient(t, sharedAddr), prefix) })
	opts := redislog.Options{Prefix: prefix}
	a, b := startNode(t, sharedAddr, opts), startNode(t, sharedAddr, opts)
	publish := func(n *node, k int) {
		for range k {
			_, err := n.sess.Publish(context.Background(), []byte(`{}`))
			require.NoError(t, err)
		}
	}
	var r recorder
	c := dialRec(t, a.url(), &r)
	publish(b, 10)
	epoch := a.sess.Epoch()
	waitFor(t, &r, epoch, 10)
	require.NoError(t, c.Close())

	publish(a, 10) // while the client is away
	seq, ep := r.last()
	c2 := dialRec(t, b.url(), &r, client.WithStartAfter(seq, ep))
	publish(a, 10)
	waitFor(t, &r, epoch, 30)
	require.NoError(t, c2.Close())

	// a restarts: a fresh store and session on the same Redis.
	a.stop()
	publish(b, 5)
	a2 := startNode(t, sharedAddr, opts)
	require.Equal(t, epoch, a2.sess.Epoch(), "a restarted node keeps the epoch")
	seq, ep = r.last()
	dialRec(t, a2.url(), &r, client.WithStartAfter(seq, ep))
	publish(b, 5)
	waitFor(t, &r, epoch, 40)

	events, resets := r.snapshot()
	require.Empty(t, resets)
	require.Len(t, events, 40)
	for i, ev := range events {
		require.Equal(t, uint64(i+1), ev.Seq)
	}
}
