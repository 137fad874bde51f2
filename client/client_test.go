package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

func TestReceiveInOrder(t *testing.T) {
	sess, srv := newSession(t)
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle))

	publishN(t, sess, 200)
	col.waitLen(t, 200)
	requireContiguous(t, col.get(), 1, 200)
	assert.JSONEq(t, `{"n":0}`, string(col.get()[0].Data))

	require.Eventually(t, func() bool { seq, _ := c.Position(); return seq == 200 }, waitFor, tick)
	_, epoch := c.Position()
	assert.Equal(t, sess.Epoch(), epoch)
	// Acks reach the server: the per-identity acked position follows.
	require.Eventually(t, func() bool { seq, ok := sess.Acked(""); return ok && seq == 200 }, waitFor, tick)
}

func TestEventsChannel(t *testing.T) {
	sess, srv := newSession(t)
	c := dial(t, srv.WS("/"))
	publishN(t, sess, 20)
	for want := uint64(1); want <= 20; want++ {
		select {
		case ev := <-c.Events():
			require.Equal(t, want, ev.Seq)
		case <-time.After(waitFor):
			t.Fatal("no event")
		}
	}
	// The position follows once the run goroutine sees the send complete.
	require.Eventually(t, func() bool { seq, _ := c.Position(); return seq == 20 }, waitFor, tick)

	require.NoError(t, c.Close())
	_, open := <-c.Events()
	assert.False(t, open, "Events is closed after Close")
	assert.ErrorIs(t, c.Err(), client.ErrClosed)
}

func TestHeartbeatsAnswered(t *testing.T) {
	// An idle client answers pings, so the server keeps it well past its
	// heartbeat timeout.
	sess, srv := newSession(t, fanout.WithHeartbeat(20*time.Millisecond, 60*time.Millisecond))
	c := dial(t, srv.WS("/"))
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, c.Stats().Reconnects)
	assert.Equal(t, 1, sess.Stats().Connections)
}

func TestStartsAtHead(t *testing.T) {
	sess, srv := newSession(t)
	publishN(t, sess, 10)
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle))
	seq, _ := c.Position()
	assert.Equal(t, uint64(10), seq, "a fresh client starts after the head")
	publishN(t, sess, 5)
	col.waitLen(t, 5)
	requireContiguous(t, col.get(), 11, 15)
}

func TestReplayAll(t *testing.T) {
	sess, srv := newSession(t)
	publishN(t, sess, 10)
	var col collector
	reset := false
	dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithStartAfter(0, ""),
		client.WithOnReset(func(uint64, string) { reset = true }))
	col.waitLen(t, 10)
	requireContiguous(t, col.get(), 1, 10)
	assert.False(t, reset)
}

func TestResumeAfterDrop(t *testing.T) {
	sess, srv := newSession(t)
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithBackoff(10*time.Millisecond, 50*time.Millisecond))

	publishN(t, sess, 50)
	col.waitLen(t, 50)
	for round := range 3 {
		require.Equal(t, 1, srv.Kill())
		publishN(t, sess, 50) // published while the client is away
		col.waitLen(t, 100+50*round)
	}
	publishN(t, sess, 10)
	col.waitLen(t, 210)
	requireContiguous(t, col.get(), 1, 210)
	assert.Equal(t, uint64(3), c.Stats().Reconnects)
	assert.Equal(t, uint64(3), sess.Stats().ResumesReplayed)
	assert.Zero(t, c.Stats().Resets)
}

func TestRetriesAfterShutdown(t *testing.T) {
	// 1001 from a server going away is not terminal, nor is the 503 of a
	// session that has shut down: the client keeps trying.
	sess, err := fanout.NewSession("test")
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	var hits atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		sess.ServeHTTP(w, r)
	}))
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	publishN(t, sess, 3)
	col.waitLen(t, 3)
	require.NoError(t, sess.Shutdown(t.Context()))
	require.Eventually(t, func() bool { return hits.Load() >= 5 }, waitFor, tick)
	assert.Nil(t, c.Err())
	requireContiguous(t, col.get(), 1, 3)
}

func TestHTTPClientCookies(t *testing.T) {
	_, srv := newSession(t, fanout.WithAuthenticate(func(r *http.Request) (fanout.Identity, error) {
		ck, err := r.Cookie("session")
		if err != nil {
			return fanout.Identity{}, err
		}
		return fanout.Identity{User: ck.Value}, nil
	}))
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: "bob"}})

	c := dial(t, srv.WS("/"), client.WithHTTPClient(&http.Client{Jar: jar}))
	_, err = c.Publish(t.Context(), []byte(`1`))
	require.NoError(t, err)
	ev := <-c.Events()
	assert.Equal(t, "bob", ev.From)
}

func TestPublishBatchesRespectFrameLimit(t *testing.T) {
	// Publishes queued while the client is away go out after the reconnect,
	// packed into frames no larger than the server accepts.
	sess, err := fanout.NewSession("test", fanout.WithMaxMessageSize(1024), fanout.WithPublishRate(1e6, 1e6))
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	srv, away, refused := newAwayServer(t, sess)
	c := dial(t, srv.WS("/"), client.WithMaxMessageSize(1024), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	go func() {
		for range c.Events() {
		}
	}()
	away.Store(true)
	srv.Kill()
	var wg sync.WaitGroup
	seqs := make(chan uint64, 50)
	for i := range 50 {
		wg.Go(func() {
			seq, err := c.Publish(t.Context(), fmt.Appendf(nil, `{"i":%d,"pad":%q}`, i, strings.Repeat("x", 200)))
			assert.NoError(t, err)
			seqs <- seq
		})
	}
	require.Eventually(t, func() bool { return refused.Load() >= 3 }, waitFor, tick)
	away.Store(false)
	wg.Wait()
	close(seqs)
	got := map[uint64]bool{}
	for seq := range seqs {
		got[seq] = true
	}
	assert.Len(t, got, 50)
	assert.Equal(t, uint64(50), sess.Stats().Head)
	assert.Nil(t, c.Err())
	assert.Equal(t, uint64(1), c.Stats().Reconnects)
}

func TestResetOnUnknownEpoch(t *testing.T) {
	sess, srv := newSession(t)
	publishN(t, sess, 7)
	var col collector
	resets := make(chan uint64, 1)
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle),
		client.WithStartAfter(3, "an-epoch-long-gone"),
		client.WithOnReset(func(head uint64, _ string) { resets <- head }))
	select {
	case head := <-resets:
		assert.Equal(t, uint64(7), head)
	case <-time.After(waitFor):
		t.Fatal("no reset")
	}
	require.Eventually(t, func() bool {
		seq, epoch := c.Position()
		return seq == 7 && epoch == sess.Epoch()
	}, waitFor, tick, "the reset is processed once the callback returns")
	publishN(t, sess, 2)
	col.waitLen(t, 2)
	requireContiguous(t, col.get(), 8, 9)
	assert.Equal(t, uint64(1), c.Stats().Resets)
}

func TestResetWhenTooOld(t *testing.T) {
	sess, srv := newSession(t, fanout.WithHistory(10))
	publishN(t, sess, 50)
	var col collector
	var head atomic.Uint64
	dial(t, srv.WS("/"), client.WithHandler(col.handle),
		client.WithStartAfter(1, sess.Epoch()),
		client.WithOnReset(func(h uint64, _ string) { head.Store(h) }))
	require.Eventually(t, func() bool { return head.Load() == 50 }, waitFor, tick)
	publishN(t, sess, 1)
	col.waitLen(t, 1)
	requireContiguous(t, col.get(), 51, 51)
}

func TestResetWhenBeyondHead(t *testing.T) {
	sess, srv := newSession(t)
	publishN(t, sess, 5)
	resets := make(chan uint64, 1)
	c := dial(t, srv.WS("/"), client.WithStartAfter(100, sess.Epoch()),
		client.WithOnReset(func(head uint64, _ string) { resets <- head }))
	go func() {
		for range c.Events() {
		}
	}()
	select {
	case head := <-resets:
		assert.Equal(t, uint64(5), head)
	case <-time.After(waitFor):
		t.Fatal("no reset")
	}
}

func TestResetAfterReconnect(t *testing.T) {
	// The client falls out of the history window while it is away.
	sess, err := fanout.NewSession("test", fanout.WithHistory(5))
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	srv, away, _ := newAwayServer(t, sess)
	var col collector
	resets := make(chan uint64, 1)
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle),
		client.WithBackoff(time.Millisecond, 5*time.Millisecond),
		client.WithOnReset(func(head uint64, _ string) { resets <- head }))
	away.Store(true)
	srv.Kill()
	publishN(t, sess, 20)
	away.Store(false)
	select {
	case head := <-resets:
		assert.Equal(t, uint64(20), head)
	case <-time.After(waitFor):
		t.Fatal("no reset")
	}
	assert.Equal(t, uint64(1), c.Stats().Resets)
	assert.Zero(t, col.len())
}

func TestPublish(t *testing.T) {
	sess, srv := newSession(t, fanout.WithAuthenticate(func(r *http.Request) (fanout.Identity, error) {
		if u := r.Header.Get("X-User"); u != "" {
			return fanout.Identity{User: u}, nil
		}
		return fanout.Identity{}, errors.New("no user")
	}))
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithHeader(http.Header{"X-User": {"alice"}}))

	seq, err := c.Publish(t.Context(), []byte("{\n \"hello\": \"world\"\n}"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), seq)
	seq, err = c.Publish(t.Context(), []byte(`2`))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), seq)

	col.waitLen(t, 2)
	evs := col.get()
	requireContiguous(t, evs, 1, 2)
	assert.JSONEq(t, `{"hello":"world"}`, string(evs[0].Data))
	assert.Equal(t, "alice", evs[0].From)
	assert.Len(t, evs[0].ID, 32)
	assert.NotEqual(t, evs[0].ID, evs[1].ID)
	assert.Equal(t, uint64(2), sess.Stats().Head)
}

func TestPublishRefused(t *testing.T) {
	_, srv := newSession(t, fanout.WithValidate(func(_ context.Context, _ *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
		switch string(data) {
		case `"forbidden"`:
			return nil, fmt.Errorf("no: %w", fanout.ErrForbidden)
		case `"invalid"`:
			return nil, errors.New("bad shape")
		}
		return data, nil
	}))
	c := dial(t, srv.WS("/"), client.WithMaxMessageSize(200))

	for _, code := range []string{"forbidden", "invalid"} {
		_, err := c.Publish(t.Context(), []byte(`"`+code+`"`))
		var pe *client.PublishError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, code, pe.Code)
	}

	_, err := c.Publish(t.Context(), []byte(`"`+strings.Repeat("x", 300)+`"`))
	var pe *client.PublishError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "too_large", pe.Code)

	_, err = c.Publish(t.Context(), []byte(`{not json`))
	require.Error(t, err)

	// None of that hurt the connection.
	seq, err := c.Publish(t.Context(), []byte(`"fine"`))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), seq)
	assert.Zero(t, c.Stats().Reconnects)
}

// blockingValidate holds the first client publish until released, so that
// a test can drop the connection while the publish is unanswered.
type blockingValidate struct {
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func newBlockingValidate() *blockingValidate {
	return &blockingValidate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingValidate) validate(_ context.Context, _ *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
	if b.calls.Add(1) == 1 {
		close(b.entered)
		<-b.release
	}
	return data, nil
}

func TestPublishRetriedExactlyOnce(t *testing.T) {
	bv := newBlockingValidate()
	sess, srv := newSession(t, fanout.WithValidate(bv.validate))
	var col collector
	c := dial(t, srv.WS("/"), client.WithHandler(col.handle), client.WithBackoff(10*time.Millisecond, 20*time.Millisecond))

	type res struct {
		seq uint64
		err error
	}
	done := make(chan res, 1)
	go func() {
		seq, err := c.Publish(t.Context(), []byte(`{"once":true}`))
		done <- res{seq, err}
	}()
	<-bv.entered
	srv.Kill() // the ack can no longer reach the client
	close(bv.release)

	var r res
	select {
	case r = <-done:
	case <-time.After(waitFor):
		t.Fatal("publish did not complete")
	}
	require.NoError(t, r.err)
	assert.Equal(t, uint64(1), r.seq)
	assert.GreaterOrEqual(t, c.Stats().Resent, uint64(1), "the publish was sent twice")

	// A later publish proves the first is settled; exactly one copy exists.
	seq, err := c.Publish(t.Context(), []byte(`{"after":true}`))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), seq)
	col.waitLen(t, 2)
	requireContiguous(t, col.get(), 1, 2)
	assert.Equal(t, uint64(2), sess.Stats().Head)
}

func TestPublishContextCancelled(t *testing.T) {
	bv := newBlockingValidate()
	_, srv := newSession(t, fanout.WithValidate(bv.validate))
	c := dial(t, srv.WS("/"))
	go func() {
		for range c.Events() {
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, []byte(`1`))
		errc <- err
	}()
	<-bv.entered
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	close(bv.release)
	// The abandoned publish still took effect, and the client goes on.
	seq, err := c.Publish(t.Context(), []byte(`2`))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), seq)
}

func TestPublishFailsOnClose(t *testing.T) {
	got := make(chan struct{})
	srv := rawServer(t, func(c *rawConn) { // takes a publish, never answers it
		c.send(welcome("e", 0, false, 0))
		if f := c.read(); strings.Contains(string(f), `"publish"`) {
			close(got)
		}
		c.drain()
	})
	c := dial(t, srv.WS("/"))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), []byte(`1`))
		errc <- err
	}()
	select {
	case <-got:
	case <-time.After(waitFor):
		t.Fatal("no publish")
	}
	require.NoError(t, c.Close())
	assert.ErrorIs(t, <-errc, client.ErrClosed)
	_, err := c.Publish(t.Context(), []byte(`1`))
	assert.ErrorIs(t, err, client.ErrClosed)
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	sess, srv := newSession(t)
	ignore := goleak.IgnoreCurrent()
	var col collector
	c, err := client.Dial(t.Context(), srv.WS("/"), client.WithHandler(col.handle))
	require.NoError(t, err)
	publishN(t, sess, 5)
	col.waitLen(t, 5)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice is fine")
	<-c.Done()
	assert.ErrorIs(t, c.Err(), client.ErrClosed)
	goleak.VerifyNone(t, ignore)
}

func TestCloseWhileHandlerBusy(t *testing.T) {
	sess, srv := newSession(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	c := dial(t, srv.WS("/"), client.WithHandler(func(client.Event) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	}))
	publishN(t, sess, 10)
	<-entered
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while the handler was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-closed
	assert.Equal(t, int32(1), calls.Load(), "no handler call after Close")
}

func TestDialErrors(t *testing.T) {
	_, srv := newSession(t, fanout.WithAuthenticate(func(*http.Request) (fanout.Identity, error) {
		return fanout.Identity{}, errors.New("nope")
	}))
	_, err := client.Dial(t.Context(), srv.WS("/"))
	var he *client.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusUnauthorized, he.StatusCode)
	assert.Contains(t, err.Error(), "401")

	_, srv = newSession(t)
	_, err = client.Dial(t.Context(), srv.WS("/")+"?after=x")
	require.Error(t, err, "a bad after is refused before dialing")
	_, err = client.Dial(t.Context(), srv.WS("/"), client.WithHeader(http.Header{"Origin": {"https://elsewhere.example"}}))
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusForbidden, he.StatusCode)

	// Nothing listens there any more.
	addr := srv.WS("/")
	srv.Close()
	_, err = client.Dial(t.Context(), addr)
	require.Error(t, err)
}

func TestReconnectRefusedStops(t *testing.T) {
	var refuse atomic.Bool
	_, srv := newSession(t, fanout.WithAuthenticate(func(*http.Request) (fanout.Identity, error) {
		if refuse.Load() {
			return fanout.Identity{}, errors.New("token expired")
		}
		return fanout.Identity{User: "u"}, nil
	}))
	c := dial(t, srv.WS("/"), client.WithBackoff(time.Millisecond, time.Millisecond))
	refuse.Store(true)
	srv.Kill()
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("client did not stop")
	}
	var he *client.HandshakeError
	require.ErrorAs(t, c.Err(), &he)
	assert.Equal(t, http.StatusUnauthorized, he.StatusCode)
}

func TestTerminalCloseCodes(t *testing.T) {
	for _, code := range []websocket.StatusCode{1000, 1008, 1009, 4000} {
		t.Run(code.String(), func(t *testing.T) {
			srv := rawServer(t, func(c *rawConn) {
				c.send(welcome("e", 0, false, 0), event(1), event(2))
				c.ws.Close(code, "bye")
			})
			c := dial(t, srv.WS("/"))
			// What came before the close is still delivered, then the
			// channel closes.
			var seqs []uint64
			for ev := range c.Events() {
				seqs = append(seqs, ev.Seq)
			}
			assert.Equal(t, []uint64{1, 2}, seqs)
			select {
			case <-c.Done():
			case <-time.After(waitFor):
				t.Fatal("client did not stop")
			}
			assert.Equal(t, code, websocket.CloseStatus(c.Err()))
			assert.Equal(t, fanout.CloseCode(code), fanout.CloseCodeOf(c.Err()))
			var ce *fanout.CloseError
			require.ErrorAs(t, c.Err(), &ce)
			assert.Equal(t, "bye", ce.Reason)
			assert.Zero(t, c.Stats().Reconnects)
		})
	}
}

func TestReconnectingCloseCodes(t *testing.T) {
	for _, code := range []websocket.StatusCode{1001, 1011, 4001, 4002} {
		t.Run(code.String(), func(t *testing.T) {
			var conns atomic.Int32
			srv := rawServer(t, func(c *rawConn) {
				conns.Add(1)
				c.send(welcome("e", 0, c.n > 1, 0))
				if c.n == 1 {
					c.ws.Close(code, "again")
					return
				}
				c.drain()
			})
			c := dial(t, srv.WS("/"), client.WithBackoff(time.Millisecond, time.Millisecond))
			require.Eventually(t, func() bool { return conns.Load() == 2 }, waitFor, tick)
			require.Eventually(t, func() bool { return c.Stats().Reconnects == 1 }, waitFor, tick)
			assert.Nil(t, c.Err())
		})
	}
}

func TestHandlerPublishes(t *testing.T) {
	// A handler that publishes and waits for the ack must not block the
	// reading of that ack.
	sess, srv := newSession(t)
	var col collector
	var c *client.Client
	replies := make(chan uint64, 10)
	c = dial(t, srv.WS("/"), client.WithHandler(func(ev client.Event) {
		col.handle(ev)
		if ev.ID == "" { // a server event: answer it
			seq, err := c.Publish(context.Background(), fmt.Appendf(nil, `{"re":%d}`, ev.Seq))
			if err == nil {
				replies <- seq
			}
		}
	}))
	publishN(t, sess, 3)
	for range 3 {
		select {
		case <-replies:
		case <-time.After(waitFor):
			t.Fatal("publish from the handler did not complete")
		}
	}
	col.waitLen(t, 6)
	requireContiguous(t, col.get(), 1, 6)
}

func TestFullBufferResumes(t *testing.T) {
	sess, srv := newSession(t)
	release := make(chan struct{})
	var col collector
	c := dial(t, srv.WS("/"), client.WithBuffer(8), client.WithHandler(func(ev client.Event) {
		if ev.Seq == 1 {
			<-release
		}
		col.handle(ev)
	}))
	publishN(t, sess, 200)
	// While the handler is stuck, the connection still carries publishes.
	seq, err := c.Publish(t.Context(), []byte(`"meanwhile"`))
	require.NoError(t, err)
	assert.Equal(t, uint64(201), seq)
	close(release)
	col.waitLen(t, 201)
	requireContiguous(t, col.get(), 1, 201)
	assert.GreaterOrEqual(t, c.Stats().Reconnects, uint64(1), "resumed after the buffer filled")
	assert.Zero(t, c.Stats().Resets)
}

// A host that ends a connection with Conn.Close stops a client that must
// not retry (1008, 1000), and the client's Err carries the code and the
// reason as the server's own CloseError.
func TestHostCloseReachesErr(t *testing.T) {
	for _, code := range []fanout.CloseCode{fanout.ClosePolicy, fanout.CloseNormal} {
		t.Run(fmt.Sprint(int(code)), func(t *testing.T) {
			sess, srv := newSession(t)
			c := dial(t, srv.WS("/"))
			conns := sess.Conns()
			require.Len(t, conns, 1)
			require.NoError(t, conns[0].Close(code, "access revoked"))
			select {
			case <-c.Done():
			case <-time.After(waitFor):
				t.Fatal("client did not stop")
			}
			err := c.Err()
			assert.Equal(t, code, fanout.CloseCodeOf(err))
			var ce *fanout.CloseError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "access revoked", ce.Reason)
			assert.Equal(t, websocket.StatusCode(code), websocket.CloseStatus(err), "the library's error is still in the chain")
			assert.Contains(t, err.Error(), "access revoked")
		})
	}
}

// Every event carries its epoch, the reset callback gets the new one, and
// Position moves only once an event (or a reset) is processed: inside the
// handler for n it is n-1, inside the reset callback the old position.
func TestPositionAndEpoch(t *testing.T) {
	type seen struct {
		seq      uint64
		epoch    string
		posSeq   uint64
		posEpoch string
	}
	sess, srv := newSession(t)
	publishN(t, sess, 7)
	var c *client.Client
	ready := make(chan struct{}) // c is set
	got := make(chan seen, 10)
	c = dial(t, srv.WS("/"),
		client.WithStartAfter(3, "an-epoch-long-gone"),
		client.WithOnReset(func(head uint64, epoch string) {
			<-ready
			ps, pe := c.Position()
			got <- seen{head, epoch, ps, pe}
		}),
		client.WithHandler(func(ev client.Event) {
			<-ready
			ps, pe := c.Position()
			got <- seen{ev.Seq, ev.Epoch, ps, pe}
		}))
	close(ready)
	publishN(t, sess, 2)
	e := sess.Epoch()
	want := []seen{
		{7, e, 3, "an-epoch-long-gone"}, // the reset: Position is still the old one
		{8, e, 7, e},                    // event 8: Position is the reset's head
		{9, e, 8, e},                    // event 9: Position is event 8
	}
	for i, w := range want {
		select {
		case g := <-got:
			assert.Equal(t, w, g, "item %d", i)
		case <-time.After(waitFor):
			t.Fatalf("item %d not delivered", i)
		}
	}
	require.Eventually(t, func() bool {
		seq, epoch := c.Position()
		return seq == 9 && epoch == e
	}, waitFor, tick)
}

// Events read from the channel carry their epoch too, from a fresh start
// as after a resume in "the current epoch".
func TestEventEpoch(t *testing.T) {
	for _, opts := range [][]client.Option{nil, {client.WithStartAfter(0, "")}} {
		sess, srv := newSession(t)
		c := dial(t, srv.WS("/"), opts...)
		publishN(t, sess, 1)
		select {
		case ev := <-c.Events():
			assert.Equal(t, uint64(1), ev.Seq)
			assert.Equal(t, sess.Epoch(), ev.Epoch)
		case <-time.After(waitFor):
			t.Fatal("no event")
		}
	}
}
