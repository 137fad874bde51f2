package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/logtest"
)

// memoryBackend keeps one memory log per session name, like one process
// whose sessions share their logs.
type memoryBackend struct {
	mu            sync.Mutex
	window, dedup int
	logs          map[string]fanout.Log
}

func (b *memoryBackend) Open(t testing.TB, name string) fanout.Log {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.logs[name]; ok {
		return l
	}
	l, err := fanout.NewMemoryLog(b.window, b.dedup)
	require.NoError(t, err)
	b.logs[name] = l
	return l
}

func TestMemoryLogConformance(t *testing.T) {
	logtest.Run(t, logtest.Config{
		New: func(_ *testing.T, window, dedup int) logtest.Backend {
			return &memoryBackend{window: window, dedup: dedup, logs: map[string]fanout.Log{}}
		},
		Lose: func(_ *testing.T, b logtest.Backend) {
			m := b.(*memoryBackend)
			m.mu.Lock()
			m.logs = map[string]fanout.Log{}
			m.mu.Unlock()
		},
	})
}

// node is a session on a shared log, mounted on its own HTTP server, as
// one server process of several would be.
func newNode(t *testing.T, l fanout.Log, opts ...fanout.Option) *server {
	t.Helper()
	s, err := fanout.NewSession("shared", append(opts, fanout.WithLog(l))...)
	require.NoError(t, err)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	require.Eventually(t, func() bool { return s.Epoch() != "" }, 5*time.Second, time.Millisecond)
	return &server{t: t, s: s, hs: hs}
}

// Two nodes on one log: publishes on both, server and client side, reach
// every client on either node in one order; a client moves to the other
// node and resumes with nothing lost or repeated.
func TestSharedLogTwoNodes(t *testing.T) {
	l, err := fanout.NewMemoryLog(1000, 1000)
	require.NoError(t, err)
	a, b := newNode(t, l), newNode(t, l)
	require.Equal(t, a.s.Epoch(), b.s.Epoch())
	ca, cb := dial(t, a.url(""), nil), dial(t, b.url(""), nil)

	const n = 40
	var wg sync.WaitGroup
	for i := range n / 2 {
		wg.Go(func() {
			_, err := a.s.Publish(context.Background(), fmt.Appendf(nil, `{"a":%d}`, i))
			require.NoError(t, err)
		})
		cb.send(t, fmt.Sprintf(`{"type":"publish","id":"b%d","data":{"b":%d}}`, i, i))
	}
	wg.Wait()
	ea, eb := ca.events(t, n), cb.events(t, n)
	for i := range n {
		require.Equal(t, uint64(i+1), ea[i].Seq)
		require.Equal(t, ea[i].Seq, eb[i].Seq)
		require.JSONEq(t, string(ea[i].Data), string(eb[i].Data), "seq %d differs between nodes", i+1)
	}

	// The client on a moves to b, resuming after the event it processed.
	moved := dial(t, b.url(fmt.Sprintf("after=%d&epoch=%s", n/2, ca.welcome.Epoch)), nil)
	require.True(t, moved.welcome.Resumed)
	for i, ev := range moved.events(t, n/2) {
		require.Equal(t, uint64(n/2+i+1), ev.Seq)
	}
}

// A retry of a client publish on another node gets its original seq.
func TestSharedLogRetryOnOtherNode(t *testing.T) {
	l, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	a, b := newNode(t, l), newNode(t, l)
	ca := dial(t, a.url(""), nil)
	ca.send(t, `{"type":"publish","id":"once","data":{"x":1}}`)
	first := ca.nextOf(t, "ack")
	cb := dial(t, b.url(""), nil)
	cb.send(t, `{"type":"publish","id":"once","data":{"x":1}}`)
	require.Equal(t, first.Seq, cb.nextOf(t, "ack").Seq)
	// b's window fills from the log's tail, perhaps after the ack.
	require.Eventually(t, func() bool { return b.s.Stats().Head == 1 }, 5*time.Second, time.Millisecond)
	require.Never(t, func() bool { return b.s.Stats().Head > 1 }, 50*time.Millisecond, time.Millisecond, "appended twice")
}

// flakyLog is a memory log whose appends fail while down is set, as a
// backend that cannot be reached would.
type flakyLog struct {
	fanout.Log
	down atomic.Bool
}

func (f *flakyLog) Append(ctx context.Context, from, id string, data []byte) (fanout.Appended, error) {
	if f.down.Load() {
		return fanout.Appended{}, errors.New("connection refused")
	}
	return f.Log.Append(ctx, from, id, data)
}

// When the log cannot commit, nothing is acked: Publish returns
// ErrUnavailable and a client publish gets error "unavailable"; the
// connection stays up, and the retry commits once the log is back.
func TestSharedLogUnavailable(t *testing.T) {
	mem, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	l := &flakyLog{Log: mem}
	sv := newNode(t, l)
	c := dial(t, sv.url(""), nil)
	l.down.Store(true)
	_, err = sv.s.Publish(context.Background(), []byte(`{}`))
	require.ErrorIs(t, err, fanout.ErrUnavailable)
	c.send(t, `{"type":"publish","id":"p","data":{}}`)
	m := c.nextOf(t, "error")
	require.Equal(t, "unavailable", m.Code)
	require.Equal(t, "p", m.ID)

	l.down.Store(false)
	c.send(t, `{"type":"publish","id":"p","data":{}}`)
	require.Equal(t, uint64(1), c.nextOf(t, "ack").Seq)
	require.Equal(t, uint64(1), c.nextOf(t, "event").Seq)
}

// gatedAppendLog holds what Follow delivers until open is closed: a node
// lagging behind the others.
type gatedAppendLog struct {
	fanout.Log
	open chan struct{}
}

func (g *gatedAppendLog) Follow(ctx context.Context, epoch string, after uint64, fn func([]fanout.Record) error) error {
	return g.Log.Follow(ctx, epoch, after, func(recs []fanout.Record) error {
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
		return fn(recs)
	})
}

// A client moving to a node that has not yet received the events it got
// from another is resumed once the node has them, not reset.
func TestSharedLogResumeOnLaggingNode(t *testing.T) {
	l, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	lagging := &gatedAppendLog{Log: l, open: make(chan struct{})}
	a, b := newNode(t, l), newNode(t, lagging)
	ca := dial(t, a.url(""), nil)
	for range 5 {
		_, err := a.s.Publish(context.Background(), []byte(`{}`))
		require.NoError(t, err)
	}
	ca.events(t, 5)
	require.Equal(t, uint64(0), b.s.Stats().Head)
	time.AfterFunc(200*time.Millisecond, func() { close(lagging.open) })
	moved := dial(t, b.url(fmt.Sprintf("after=5&epoch=%s", ca.welcome.Epoch)), nil)
	require.True(t, moved.welcome.Resumed)
	require.Equal(t, uint64(5), moved.welcome.Head)
}

// A node that has not caught up with a position the log has refuses the
// connection with 503, which clients retry, rather than reset the client;
// a position beyond the log's head is reset, as on one node.
func TestSharedLogLaggingNodeRefuses(t *testing.T) {
	l, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	stuck := &gatedAppendLog{Log: l, open: make(chan struct{})}
	t.Cleanup(func() { close(stuck.open) })
	a, b := newNode(t, l), newNode(t, stuck)
	for range 5 {
		_, err := a.s.Publish(context.Background(), []byte(`{}`))
		require.NoError(t, err)
	}
	resp, err := http.Get(b.hs.URL + "/?after=5&epoch=" + a.s.Epoch())
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	beyond := dial(t, b.url(fmt.Sprintf("after=50&epoch=%s", a.s.Epoch())), nil)
	require.False(t, beyond.welcome.Resumed)
}
