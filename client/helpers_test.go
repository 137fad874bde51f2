package client_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// Short polls keep tests fast without sleeping.
const (
	waitFor = 5 * time.Second
	tick    = 5 * time.Millisecond
)

// server is an httptest server whose accepted connections can be dropped
// at the TCP level, as a network failure would: hijacked WebSockets are out
// of reach of httptest's own CloseClientConnections.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

type trackingListener struct {
	net.Listener
	s *server
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns[c] = struct{}{}
		l.s.mu.Unlock()
	}
	return c, err
}

func newServer(t *testing.T, h http.Handler) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h), conns: make(map[net.Conn]struct{})}
	s.Listener = trackingListener{Listener: s.Listener, s: s}
	s.Start()
	t.Cleanup(func() {
		s.Kill()
		s.Close()
	})
	return s
}

// WS returns the WebSocket URL of path on the server.
func (s *server) WS(path string) string {
	return "ws" + strings.TrimPrefix(s.Server.URL, "http") + path
}

// Kill drops every connection accepted so far and returns how many.
func (s *server) Kill() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.conns)
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
	return n
}

// KillSome drops the connections pick chooses and returns how many.
func (s *server) KillSome(pick func(int) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	i := 0
	for c := range s.conns {
		if pick(i) {
			c.Close()
			delete(s.conns, c)
			n++
		}
		i++
	}
	return n
}

// newSession starts a session behind a server.
func newSession(t *testing.T, opts ...fanout.Option) (*fanout.Session, *server) {
	t.Helper()
	sess, err := fanout.NewSession("test", opts...)
	require.NoError(t, err)
	srv := newServer(t, sess)
	t.Cleanup(func() { sess.Close() })
	return sess, srv
}

// dial connects a client that is closed when the test ends.
func dial(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(t.Context(), url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// collector records the events a handler gets.
type collector struct {
	mu     sync.Mutex
	events []client.Event
}

func (c *collector) handle(ev client.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
}

func (c *collector) get() []client.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.Event(nil), c.events...)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// waitLen waits until the collector holds at least n events.
func (c *collector) waitLen(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return c.len() >= n }, waitFor, tick, "want %d events", n)
}

// requireContiguous checks that events are exactly seqs from..to, in order.
func requireContiguous(t *testing.T, events []client.Event, from, to uint64) {
	t.Helper()
	require.Len(t, events, int(to-from+1))
	for i, ev := range events {
		require.Equal(t, from+uint64(i), ev.Seq, "event %d", i)
	}
}

// publishN publishes n server events {"n":i}.
func publishN(t *testing.T, sess *fanout.Session, n int) {
	t.Helper()
	for i := range n {
		_, err := sess.Publish(t.Context(), []byte(`{"n":`+itoa(i)+`}`))
		require.NoError(t, err)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// rawConn is the server side of a hand-driven connection, for behaviour the
// real session never shows (silence, gaps, duplicates).
type rawConn struct {
	ws  *websocket.Conn
	req *http.Request
	n   int // 1 for the first connection to the raw server
}

// send writes lines as one frame; it reports whether the client is still
// there.
func (c *rawConn) send(lines ...string) bool {
	return c.ws.Write(context.Background(), websocket.MessageText, []byte(strings.Join(lines, "\n"))) == nil
}

// read returns the client's next frame, or nil when the connection is gone.
func (c *rawConn) read() []byte {
	_, b, err := c.ws.Read(context.Background())
	if err != nil {
		return nil
	}
	return b
}

// drain reads until the client goes away.
func (c *rawConn) drain() {
	for c.read() != nil {
	}
}

// rawServer runs serve for every connection; it must return once the
// client is gone.
func rawServer(t *testing.T, serve func(c *rawConn)) *server {
	t.Helper()
	var mu sync.Mutex
	n := 0
	return newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		mu.Lock()
		n++
		c := &rawConn{ws: ws, req: r, n: n}
		mu.Unlock()
		serve(c)
	}))
}

func welcome(epoch string, head uint64, resumed bool, heartbeatMS int) string {
	b, _ := json.Marshal(map[string]any{
		"type": "welcome", "session": "raw", "epoch": epoch, "head": head,
		"conn": "c1", "user": "", "heartbeat": heartbeatMS, "resumed": resumed,
		"presence": []any{},
	})
	return string(b)
}

func event(seq uint64) string {
	return `{"type":"event","seq":` + itoa(int(seq)) + `,"data":{"seq":` + itoa(int(seq)) + `}}`
}

// newAwayServer serves sess, except while away is set: then it refuses
// every handshake with 503 and counts the refusals, so a client stays
// disconnected and keeps retrying.
func newAwayServer(t *testing.T, sess *fanout.Session) (srv *server, away *atomic.Bool, refused *atomic.Int32) {
	t.Helper()
	away, refused = new(atomic.Bool), new(atomic.Int32)
	srv = newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if away.Load() {
			refused.Add(1)
			http.Error(w, "later", http.StatusServiceUnavailable)
			return
		}
		sess.ServeHTTP(w, r)
	}))
	return srv, away, refused
}
