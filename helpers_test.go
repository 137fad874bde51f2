package fanout_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// msg is any server message, decoded loosely for assertions.
type msg struct {
	Type      string          `json:"type"`
	Seq       uint64          `json:"seq"`
	Data      json.RawMessage `json:"data"`
	From      string          `json:"from"`
	ID        string          `json:"id"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Session   string          `json:"session"`
	Epoch     string          `json:"epoch"`
	Head      uint64          `json:"head"`
	Oldest    uint64          `json:"oldest"`
	Conn      string          `json:"conn"`
	User      string          `json:"user"`
	Heartbeat int64           `json:"heartbeat"`
	Resumed   bool            `json:"resumed"`
	Present   int             `json:"present"`
	After     *uint64         `json:"after"`
	Snapshot  bool            `json:"snapshot"`
	Presence  []struct {
		User string `json:"user"`
		Conn string `json:"conn"`
	} `json:"presence"`
}

// server is a Session mounted on a real loopback HTTP server.
type server struct {
	t  *testing.T
	s  *fanout.Session
	hs *httptest.Server
}

func newServer(t *testing.T, opts ...fanout.Option) *server {
	t.Helper()
	s, err := fanout.NewSession("test", opts...)
	require.NoError(t, err)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	return &server{t: t, s: s, hs: hs}
}

func (sv *server) url(query string) string {
	u := "ws" + strings.TrimPrefix(sv.hs.URL, "http")
	if query != "" {
		u += "?" + query
	}
	return u
}

func (sv *server) publish(data string) uint64 {
	sv.t.Helper()
	seq, err := sv.s.Publish(context.Background(), []byte(data))
	require.NoError(sv.t, err)
	return seq
}

// client is a raw protocol client over a real WebSocket.
type client struct {
	t       *testing.T
	ws      *websocket.Conn
	msgs    chan msg
	done    chan struct{}
	err     error // why reading stopped; valid after done
	welcome msg
}

// dial connects, reads the welcome, and starts a reader that answers pings
// unless silent is set.
func dial(t *testing.T, url string, hdr http.Header) *client {
	t.Helper()
	c := dialRaw(t, url, hdr, false)
	c.welcome = c.next(t)
	require.Equal(t, "welcome", c.welcome.Type)
	return c
}

func dialRaw(t *testing.T, url string, hdr http.Header, silent bool) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	require.NoError(t, err)
	ws.SetReadLimit(-1)
	c := &client{t: t, ws: ws, msgs: make(chan msg, 1<<16), done: make(chan struct{})}
	go c.read(silent)
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c
}

func (c *client) read(silent bool) {
	defer close(c.done)
	for {
		_, frame, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		for _, line := range strings.Split(string(frame), "\n") {
			if line == "" {
				continue
			}
			var m msg
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				c.err = err
				return
			}
			if m.Type == "ping" && !silent {
				_ = c.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"pong"}`))
			}
			c.msgs <- m
		}
	}
}

// next returns the next message that is not a heartbeat.
func (c *client) next(t *testing.T) msg {
	t.Helper()
	for {
		select {
		case m := <-c.msgs:
			if m.Type == "ping" {
				continue
			}
			return m
		case <-c.done:
			select {
			case m := <-c.msgs:
				if m.Type == "ping" {
					continue
				}
				return m
			default:
			}
			require.FailNow(t, "connection closed", "%v", c.err)
		case <-time.After(5 * time.Second):
			require.FailNow(t, "timed out waiting for a message")
		}
	}
}

// nextPing waits for the next heartbeat.
func (c *client) nextPing(t *testing.T) {
	t.Helper()
	for {
		select {
		case m := <-c.msgs:
			if m.Type == "ping" {
				return
			}
		case <-c.done:
			require.FailNow(t, "connection closed", "%v", c.err)
		case <-time.After(5 * time.Second):
			require.FailNow(t, "timed out waiting for a ping")
		}
	}
}

// nextOf returns the next message of type typ, skipping others.
func (c *client) nextOf(t *testing.T, typ string) msg {
	t.Helper()
	for {
		if m := c.next(t); m.Type == typ {
			return m
		}
	}
}

// collect reads messages until it has one of each of types, in whatever
// order they come, and returns the first of each.
func (c *client) collect(t *testing.T, types ...string) map[string]msg {
	t.Helper()
	got := make(map[string]msg, len(types))
	for len(got) < len(types) {
		m := c.next(t)
		for _, typ := range types {
			if _, seen := got[typ]; m.Type == typ && !seen {
				got[typ] = m
			}
		}
	}
	return got
}

// events reads n events and returns their seqs in order of arrival.
func (c *client) events(t *testing.T, n int) []msg {
	t.Helper()
	out := make([]msg, 0, n)
	for len(out) < n {
		out = append(out, c.nextOf(t, "event"))
	}
	return out
}

func (c *client) send(t *testing.T, s string) {
	t.Helper()
	require.NoError(t, c.ws.Write(context.Background(), websocket.MessageText, []byte(s)))
}

// closed waits for the server to close the connection and returns the code.
func (c *client) closed(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case <-c.done:
		return websocket.CloseStatus(c.err)
	case <-time.After(5 * time.Second):
		require.FailNow(t, "connection not closed")
		return 0
	}
}

// dialStatus attempts a WebSocket handshake and returns the HTTP status.
func dialStatus(t *testing.T, url string, hdr http.Header) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err == nil {
		_ = ws.CloseNow()
		return http.StatusSwitchingProtocols
	}
	require.NotNil(t, resp, "dial error: %v", err)
	return resp.StatusCode
}
