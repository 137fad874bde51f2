package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// hubServer is a Hub mounted on "/d/{doc}/ws" of a real loopback server.
type hubServer struct {
	h  *fanout.Hub
	hs *httptest.Server
}

func newHubServer(t *testing.T, opts ...fanout.HubOption) *hubServer {
	t.Helper()
	h, err := fanout.NewHub(opts...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/d/{doc}/ws", h)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		_ = h.Close()
		hs.Close()
	})
	return &hubServer{h: h, hs: hs}
}

func (hv *hubServer) url(doc, query string) string {
	u := "ws" + strings.TrimPrefix(hv.hs.URL, "http") + "/d/" + doc + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

func TestHubSessionsAreIsolated(t *testing.T) {
	hv := newHubServer(t, fanout.WithHubAuthenticate(func(r *http.Request) (fanout.Identity, error) {
		return fanout.Identity{User: r.URL.Query().Get("user")}, nil
	}))
	a := dial(t, hv.url("a", "user=ann"), nil)
	b := dial(t, hv.url("b", "user=ann"), nil)
	assert.Equal(t, "a", a.welcome.Session)
	assert.Equal(t, "b", b.welcome.Session)
	assert.NotEqual(t, a.welcome.Epoch, b.welcome.Epoch)

	ctx := context.Background()
	for i := range 3 {
		seq, err := hv.h.Publish(ctx, "a", []byte(fmt.Sprintf(`{"a":%d}`, i)))
		require.NoError(t, err)
		assert.Equal(t, uint64(i+1), seq)
	}
	// The same publish id by the same identity is a new publish in each
	// session, and a retry within one.
	a.send(t, `{"type":"publish","id":"p1","data":1}`)
	b.send(t, `{"type":"publish","id":"p1","data":1}`)
	assert.Equal(t, uint64(1), b.nextOf(t, "ack").Seq)
	assert.Equal(t, uint64(1), b.nextOf(t, "event").Seq)
	a.send(t, `{"type":"publish","id":"p1","data":1}`)
	var events, acks []uint64
	for len(events) < 4 || len(acks) < 2 {
		switch m := a.next(t); m.Type {
		case "event":
			events = append(events, m.Seq)
		case "ack":
			acks = append(acks, m.Seq)
		}
	}
	assert.Equal(t, []uint64{1, 2, 3, 4}, events)
	assert.Equal(t, []uint64{4, 4}, acks)

	// Replay is per session.
	r := dial(t, hv.url("a", "after=2&epoch="+a.welcome.Epoch), nil)
	assert.True(t, r.welcome.Resumed)
	assert.Equal(t, uint64(3), r.nextOf(t, "event").Seq)
	assert.Equal(t, uint64(4), r.nextOf(t, "event").Seq)

	st := hv.h.Stats()
	assert.Equal(t, 2, st.Sessions)
	assert.Equal(t, 3, st.Connections)
	assert.Equal(t, uint64(5), st.Published)
	assert.Equal(t, uint64(1), st.Deduplicated)
	assert.Equal(t, uint64(1), st.ResumesReplayed)
}

// A client that reads nothing, in one session, is closed as a slow consumer
// there; another session's clients get their events all along.
func TestHubSlowConsumerStaysInItsSession(t *testing.T) {
	hv := newHubServer(t, fanout.WithSessionOptions(func(string) []fanout.Option {
		return []fanout.Option{fanout.WithHistory(64), fanout.WithWriteTimeout(500 * time.Millisecond)}
	}))
	// A handshake by hand, then nothing read.
	addr := strings.TrimPrefix(hv.hs.URL, "http://")
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	fmt.Fprintf(nc, "GET /d/slow/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	require.Eventually(t, func() bool { return hv.h.Stats().Connections == 1 }, 5*time.Second, time.Millisecond)
	fast := dial(t, hv.url("fast", ""), nil)
	big := `{"pad":"` + strings.Repeat("x", 60<<10) + `"}`
	ctx := context.Background()
	for i := range 300 {
		_, err := hv.h.Publish(ctx, "slow", []byte(big))
		require.NoError(t, err)
		_, err = hv.h.Publish(ctx, "fast", []byte(fmt.Sprintf(`{"i":%d}`, i)))
		require.NoError(t, err)
	}
	for i, m := range fast.events(t, 300) {
		require.Equal(t, uint64(i+1), m.Seq)
	}
	s, ok := hv.h.Session("slow")
	require.True(t, ok)
	require.Eventually(t, func() bool { return s.Stats().SlowConsumerCloses == 1 }, 5*time.Second, 10*time.Millisecond)
	f, ok := hv.h.Session("fast")
	require.True(t, ok)
	assert.Zero(t, f.Stats().SlowConsumerCloses)
}

func TestHubNames(t *testing.T) {
	hv := newHubServer(t)
	for _, tc := range []struct {
		name string
		doc  string
		want int
	}{
		{"letters", "doc", http.StatusSwitchingProtocols},
		{"all allowed", "a-Z_0.9~x:y@z", http.StatusSwitchingProtocols},
		{"at the length limit", strings.Repeat("n", 128), http.StatusSwitchingProtocols},
		{"past the length limit", strings.Repeat("n", 129), http.StatusBadRequest},
		{"escaped space", "a%20b", http.StatusBadRequest},
		{"escaped slash", "a%2Fb", http.StatusBadRequest},
		{"non-ASCII", "%C3%A9", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, dialStatus(t, hv.url(tc.doc, ""), nil))
		})
	}
	_, err := hv.h.Publish(context.Background(), "a b", []byte(`1`))
	assert.ErrorIs(t, err, fanout.ErrInvalidName)
}

func TestHubSessionNameFunc(t *testing.T) {
	h, err := fanout.NewHub(fanout.WithSessionName(func(r *http.Request) string { return r.URL.Query().Get("room") }))
	require.NoError(t, err)
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		_ = h.Close()
		hs.Close()
	})
	u := "ws" + strings.TrimPrefix(hs.URL, "http")
	c := dial(t, u+"?room=lobby", nil)
	assert.Equal(t, "lobby", c.welcome.Session)
	assert.Equal(t, http.StatusBadRequest, dialStatus(t, u, nil))
}

func TestHubAuthorize(t *testing.T) {
	hv := newHubServer(t,
		fanout.WithHubAuthenticate(func(r *http.Request) (fanout.Identity, error) {
			u := r.URL.Query().Get("user")
			if u == "" {
				return fanout.Identity{}, errors.New("no user")
			}
			return fanout.Identity{User: u}, nil
		}),
		fanout.WithAuthorize(func(_ *http.Request, id fanout.Identity, session string) error {
			switch {
			case session == "missing":
				return &fanout.StatusError{Code: http.StatusNotFound}
			case strings.HasPrefix(session, id.User+"-"), session == "public":
				return nil
			}
			return errors.New("not yours")
		}))
	for _, tc := range []struct {
		name, doc, user string
		want            int
	}{
		{"own", "ann-notes", "ann", http.StatusSwitchingProtocols},
		{"public", "public", "bob", http.StatusSwitchingProtocols},
		{"someone else's", "ann-notes", "bob", http.StatusForbidden},
		{"not found", "missing", "ann", http.StatusNotFound},
		{"anonymous", "public", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, dialStatus(t, hv.url(tc.doc, "user="+tc.user), nil))
		})
	}
	// Refused requests create no session.
	_, ok := hv.h.Session("missing")
	assert.False(t, ok)
	assert.Equal(t, uint64(2), hv.h.Stats().Created)
}

func TestHubLimits(t *testing.T) {
	t.Run("sessions", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			limit int
			want  int
		}{
			{"below", 3, http.StatusSwitchingProtocols},
			{"at", 2, http.StatusServiceUnavailable},
			{"above", 1, http.StatusServiceUnavailable},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hv := newHubServer(t, fanout.WithMaxSessions(tc.limit))
				n := min(tc.limit, 2)
				for i := range n {
					dial(t, hv.url(fmt.Sprint("s", i), ""), nil)
				}
				assert.Equal(t, tc.want, dialStatus(t, hv.url("third", ""), nil))
				// A session that exists still takes connections.
				assert.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, hv.url("s0", ""), nil))
				_, err := hv.h.Publish(context.Background(), "fourth", []byte(`1`))
				if tc.want == http.StatusServiceUnavailable {
					assert.ErrorIs(t, err, fanout.ErrSessionLimit)
				}
			})
		}
	})
	t.Run("connections", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			limit int
			open  int
			want  int
		}{
			{"below", 4, 3, http.StatusSwitchingProtocols},
			{"at", 3, 3, http.StatusServiceUnavailable},
			{"above", 2, 2, http.StatusServiceUnavailable},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hv := newHubServer(t, fanout.WithHubMaxConnections(tc.limit))
				for i := range tc.open {
					dial(t, hv.url(fmt.Sprint("s", i%2), ""), nil)
				}
				assert.Equal(t, tc.want, dialStatus(t, hv.url("other", ""), nil))
				if tc.want == http.StatusServiceUnavailable { // an existing session refuses too
					assert.Equal(t, tc.want, dialStatus(t, hv.url("s0", ""), nil))
				}
			})
		}
	})
	t.Run("per session", func(t *testing.T) {
		hv := newHubServer(t, fanout.WithSessionOptions(func(string) []fanout.Option {
			return []fanout.Option{fanout.WithMaxConnections(1)}
		}))
		dial(t, hv.url("a", ""), nil)
		assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, hv.url("a", ""), nil))
		assert.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, hv.url("b", ""), nil))
	})
}

func TestNewHubRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  fanout.HubOption
	}{
		{"nil option", nil},
		{"sessions", fanout.WithMaxSessions(0)},
		{"connections", fanout.WithHubMaxConnections(0)},
		{"idle", fanout.WithIdleTimeout(0)},
		{"name func", fanout.WithSessionName(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fanout.NewHub(tc.opt)
			assert.ErrorIs(t, err, fanout.ErrInvalidOption)
		})
	}
	// Session options are checked when a session is made.
	hv := newHubServer(t, fanout.WithSessionOptions(func(string) []fanout.Option {
		return []fanout.Option{fanout.WithHistory(0)}
	}))
	assert.Equal(t, http.StatusInternalServerError, dialStatus(t, hv.url("a", ""), nil))
	_, err := hv.h.Publish(context.Background(), "a", []byte(`1`))
	assert.ErrorIs(t, err, fanout.ErrInvalidOption)
}

// Many clients opening the same new session at once all get one session.
func TestHubCreationRace(t *testing.T) {
	hv := newHubServer(t)
	const n = 40
	epochs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, hv.url("new", ""), nil)
			if !assert.NoError(t, err) {
				return
			}
			defer ws.CloseNow()
			_, b, err := ws.Read(ctx)
			if assert.NoError(t, err) {
				var m msg
				first, _, _ := strings.Cut(string(b), "\n")
				assert.NoError(t, jsonUnmarshal([]byte(first), &m))
				epochs[i] = m.Epoch
			}
		})
	}
	wg.Wait()
	for _, e := range epochs {
		assert.Equal(t, epochs[0], e)
	}
	assert.Equal(t, uint64(1), hv.h.Stats().Created)
}

// Connections arriving while their session is being evicted either join a
// live session, one that takes publishes and delivers them, or are refused
// with 503; and an evicted session's clients are told resumed:false.
func TestHubEvictionRace(t *testing.T) {
	hv := newHubServer(t, fanout.WithIdleTimeout(2*time.Millisecond))
	c := dial(t, hv.url("e", ""), nil)
	epoch := c.welcome.Epoch
	_, err := hv.h.Publish(context.Background(), "e", []byte(`1`))
	require.NoError(t, err)
	c.nextOf(t, "event")
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	require.Eventually(t, func() bool { return hv.h.Stats().Evicted >= 1 }, 5*time.Second, time.Millisecond)

	r := dial(t, hv.url("e", "after=1&epoch="+epoch), nil)
	assert.False(t, r.welcome.Resumed)
	assert.NotEqual(t, epoch, r.welcome.Epoch)
	_ = r.ws.Close(websocket.StatusNormalClosure, "")

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				ws, resp, err := websocket.Dial(ctx, hv.url("e", ""), nil)
				if err != nil {
					cancel()
					if assert.NotNil(t, resp, "%v", err) {
						assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
					}
					continue
				}
				_, b, err := ws.Read(ctx)
				if !assert.NoError(t, err) {
					cancel()
					_ = ws.CloseNow()
					continue
				}
				var m msg
				first, _, _ := strings.Cut(string(b), "\n")
				assert.NoError(t, jsonUnmarshal([]byte(first), &m))
				assert.Equal(t, "welcome", m.Type)
				id := fmt.Sprintf("w%d-%d", w, i)
				assert.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(`{"type":"publish","id":"`+id+`","data":1}`)))
				acked := false
				for !acked {
					_, b, err := ws.Read(ctx)
					if !assert.NoError(t, err) {
						break
					}
					for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
						var m msg
						assert.NoError(t, jsonUnmarshal([]byte(line), &m))
						if m.Type == "ack" && m.ID == id {
							acked = true
						}
					}
				}
				_ = ws.Close(websocket.StatusNormalClosure, "")
				cancel()
				time.Sleep(time.Duration(i%4) * time.Millisecond) // room for an eviction
			}
		})
	}
	wg.Wait()
}

// Shutdown closes every client of every session with 1001.
func TestHubShutdownManySessions(t *testing.T) {
	hv := newHubServer(t)
	const n = 1000
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = dialRaw(t, hv.url(fmt.Sprint("doc", i), ""), nil, false)
	}
	require.Eventually(t, func() bool { return hv.h.Stats().Connections == n }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, n, hv.h.Stats().Sessions)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, hv.h.Shutdown(ctx))
	for _, c := range cs {
		assert.Equal(t, websocket.StatusGoingAway, c.closed(t))
	}
	_, err := hv.h.Publish(ctx, "doc1", []byte(`1`))
	assert.ErrorIs(t, err, fanout.ErrClosed)
	assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, hv.url("doc1", ""), nil))
	assert.Equal(t, 0, hv.h.Stats().Connections)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestHubOpen(t *testing.T) {
	hv := newHubServer(t)
	s, err := hv.h.Open("doc")
	require.NoError(t, err)
	again, err := hv.h.Open("doc")
	require.NoError(t, err)
	assert.Same(t, s, again)
	c := dial(t, hv.url("doc", ""), nil)
	assert.Equal(t, s.Epoch(), c.welcome.Epoch)
	_, err = hv.h.Open("")
	assert.ErrorIs(t, err, fanout.ErrInvalidName)
}

// hubCounter counts the hub's session events.
type hubCounter struct {
	fanout.BaseObserver
	created, evicted atomic.Int64
}

func (c *hubCounter) HubSessionCreated(string) { c.created.Add(1) }
func (c *hubCounter) HubSessionEvicted(string) { c.evicted.Add(1) }

// The observer its sessions are given hears of sessions the hub creates
// and evicts.
func TestHubObserved(t *testing.T) {
	obs := &hubCounter{}
	h, err := fanout.NewHub(
		fanout.WithIdleTimeout(50*time.Millisecond),
		fanout.WithSessionOptions(func(string) []fanout.Option { return []fanout.Option{fanout.WithObserver(obs)} }),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	_, err = h.Publish(context.Background(), "a", []byte(`{}`))
	require.NoError(t, err)
	_, err = h.Publish(context.Background(), "b", []byte(`{}`))
	require.NoError(t, err)
	assert.Equal(t, int64(2), obs.created.Load())
	require.Eventually(t, func() bool { return obs.evicted.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
}

// A hub, like a session, answers only the hosts it lists (DNS rebinding),
// its own and its sessions'.
func TestHubHosts(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []fanout.HubOption
		want int
	}{
		{"any host by default", nil, http.StatusSwitchingProtocols},
		{"hub lists another host", []fanout.HubOption{fanout.WithHubHosts("app.example.com")}, http.StatusForbidden},
		{"hub lists this host", []fanout.HubOption{fanout.WithHubHosts("127.0.0.1")}, http.StatusSwitchingProtocols},
		{"session lists another host", []fanout.HubOption{fanout.WithSessionOptions(func(string) []fanout.Option {
			return []fanout.Option{fanout.WithHosts("app.example.com")}
		})}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := fanout.NewHub(tc.opts...)
			require.NoError(t, err)
			mux := http.NewServeMux()
			mux.Handle("/docs/{doc}/ws", h)
			hs := httptest.NewServer(mux)
			t.Cleanup(func() {
				_ = h.Close()
				hs.Close()
			})
			url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/docs/d1/ws"
			assert.Equal(t, tc.want, dialStatus(t, url, nil))
		})
	}
}

// With a shared log, eviction drops only the node's window: the next
// session of that name reads the same log, with its epoch, and a client
// resumes as if nothing happened.
func TestHubEvictionKeepsSharedLog(t *testing.T) {
	var mu sync.Mutex
	logs := map[string]fanout.Log{}
	obs := &hubCounter{}
	hv := newHubServer(t,
		fanout.WithIdleTimeout(50*time.Millisecond),
		fanout.WithSessionOptions(func(name string) []fanout.Option {
			mu.Lock()
			defer mu.Unlock()
			if logs[name] == nil {
				l, err := fanout.NewMemoryLog(100, 100)
				require.NoError(t, err)
				logs[name] = l
			}
			return []fanout.Option{fanout.WithLog(logs[name]), fanout.WithObserver(obs)}
		}))
	c := dial(t, hv.url("doc", ""), nil)
	epoch := c.welcome.Epoch
	require.NotEmpty(t, epoch)
	seq, err := hv.h.Publish(context.Background(), "doc", []byte(`{"n":1}`))
	require.NoError(t, err)
	require.Equal(t, uint64(seq), c.nextOf(t, "event").Seq)
	_ = c.ws.CloseNow()
	require.Eventually(t, func() bool { return obs.evicted.Load() == 1 }, 10*time.Second, 10*time.Millisecond)

	seq2, err := hv.h.Publish(context.Background(), "doc", []byte(`{"n":2}`))
	require.NoError(t, err)
	require.Equal(t, seq+1, seq2, "the sequence goes on in the shared log")
	back := dial(t, hv.url("doc", fmt.Sprintf("after=%d&epoch=%s", seq, epoch)), nil)
	require.True(t, back.welcome.Resumed)
	require.Equal(t, epoch, back.welcome.Epoch)
	require.Equal(t, seq2, back.nextOf(t, "event").Seq)
}
