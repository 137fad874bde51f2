package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { announceBrowserSkip() }))
}

// testServer is the example serving on a loopback port.
type testServer struct {
	app    *app
	addr   string // host:port
	cancel context.CancelFunc
	done   chan error // serve's result

	once sync.Once
	err  error
}

// startServer runs the example on 127.0.0.1:0 until the test ends (or
// stop is called).
func startServer(t *testing.T, logger *slog.Logger, opts ...fanout.Option) *testServer {
	t.Helper()
	return startServerWith(t, logger, config{}, opts...)
}

// startServerWith is startServer with the flags' settings in cfg.
func startServerWith(t *testing.T, logger *slog.Logger, cfg config, opts ...fanout.Option) *testServer {
	t.Helper()
	ts, err := newTestServerWith(logger, cfg, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.stop() })
	return ts
}

// newTestServer starts the example on 127.0.0.1:0; the caller stops it.
func newTestServer(logger *slog.Logger, opts ...fanout.Option) (*testServer, error) {
	return newTestServerWith(logger, config{}, opts...)
}

// newTestServerWith is newTestServer with the flags' settings in cfg.
func newTestServerWith(logger *slog.Logger, cfg config, opts ...fanout.Option) (*testServer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a, err := newApp(logger, cfg, opts...)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{app: a, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- a.serve(ctx, ln) }()
	return ts, nil
}

// stop cancels the run context and returns serve's result. It may be
// called more than once.
func (ts *testServer) stop() error {
	ts.once.Do(func() {
		ts.cancel()
		ts.err = <-ts.done
	})
	return ts.err
}

func (ts *testServer) wsURL(query string) string { return "ws://" + ts.addr + "/ws" + query }

// dial connects a WebSocket client and returns the messages of its first
// frame, which starts with the welcome.
func dial(t *testing.T, url string) (*websocket.Conn, []map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, readMessages(t, c)
}

// readMessages reads one frame and decodes its NDJSON messages.
func readMessages(t *testing.T, c *websocket.Conn) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, frame, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	var msgs []map[string]any
	for line := range strings.SplitSeq(string(frame), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "line %q", line)
		msgs = append(msgs, m)
	}
	require.NotEmpty(t, msgs)
	return msgs
}

// readUntil reads frames until n messages of the given types have arrived.
func readUntil(t *testing.T, c *websocket.Conn, n int, types ...string) []map[string]any {
	t.Helper()
	var got []map[string]any
	for len(got) < n {
		for _, m := range readMessages(t, c) {
			for _, typ := range types {
				if m["type"] == typ {
					got = append(got, m)
				}
			}
		}
	}
	return got
}

func write(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(msg)))
}

func TestPage(t *testing.T) {
	ts := startServer(t, nil)
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html", "Example-only sign-in"},
		{"/?user=alice", "text/html", `src="app.js"`},
		{"/app.js", "javascript", "PROTOCOL.md"},
		{"/style.css", "text/css", ".items"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get("http://" + ts.addr + tc.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, resp.Header.Get("Content-Type"), tc.contentType)
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
			assert.Contains(t, string(body), tc.contains)
		})
	}
	resp, err := http.Get("http://" + ts.addr + "/nope")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestWelcome(t *testing.T) {
	ts := startServer(t, nil)
	_, msgs := dial(t, ts.wsURL("?user=a"))
	w := msgs[0]
	assert.Equal(t, "welcome", w["type"])
	assert.Equal(t, "collab", w["session"])
	assert.Equal(t, "a", w["user"])
	assert.Equal(t, ts.app.session().Epoch(), w["epoch"])
	assert.Equal(t, false, w["resumed"])
	assert.EqualValues(t, 25000, w["heartbeat"])
	presence, ok := w["presence"].([]any)
	require.True(t, ok, "presence is a list: %v", w["presence"])
	require.Len(t, presence, 1)
	assert.Equal(t, "a", presence[0].(map[string]any)["user"])

	// The page's first visit: after=0 without an epoch replays everything.
	_, err := ts.app.session().Publish(context.Background(), []byte(`{"text":"from the server"}`))
	require.NoError(t, err)
	c, msgs := dial(t, ts.wsURL("?user=b&after=0"))
	assert.Equal(t, true, msgs[0]["resumed"])
	ev := msgs
	if len(ev) < 2 {
		ev = append(ev, readMessages(t, c)...)
	}
	assert.Equal(t, "event", ev[1]["type"])
	assert.EqualValues(t, 1, ev[1]["seq"])
}

func TestAuthentication(t *testing.T) {
	ts := startServer(t, nil)
	for _, q := range []string{"", "?user=", "?user=%20%20", "?user=" + strings.Repeat("x", maxNameLen+1), "?after=0"} {
		t.Run(q, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, ts.wsURL(q), nil)
			if c != nil {
				_ = c.CloseNow()
			}
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		})
	}
	_, msgs := dial(t, ts.wsURL("?user="+strings.Repeat("é", maxNameLen)))
	assert.Equal(t, strings.Repeat("é", maxNameLen), msgs[0]["user"])
}

func TestPublish(t *testing.T) {
	ts := startServer(t, nil)
	a, _ := dial(t, ts.wsURL("?user=a"))
	b, _ := dial(t, ts.wsURL("?user=b"))
	readUntil(t, a, 1, "join") // b is here

	write(t, a, `{"type":"publish","id":"n1","data":{"text":"  hello <b>  ","extra":1}}`)
	got := readUntil(t, a, 2, "ack", "event")
	var ev map[string]any
	for _, m := range got {
		switch m["type"] {
		case "ack":
			assert.Equal(t, "n1", m["id"])
			assert.EqualValues(t, 1, m["seq"])
		case "event":
			ev = m
		}
	}
	require.NotNil(t, ev)
	assert.EqualValues(t, 1, ev["seq"])
	assert.Equal(t, "a", ev["from"])
	data := ev["data"].(map[string]any)
	assert.Equal(t, "hello <b>", data["text"], "trimmed")
	assert.NotContains(t, data, "extra", "the validation hook keeps only the note")
	_, err := time.Parse(time.RFC3339, data["at"].(string))
	assert.NoError(t, err)
	other := readUntil(t, b, 1, "event")
	assert.Equal(t, ev, other[0], "every connection gets the same event")

	// The same id again is not added twice: the ack carries the first seq.
	write(t, a, `{"type":"publish","id":"n1","data":{"text":"hello"}}`)
	ack := readUntil(t, a, 1, "ack")
	assert.EqualValues(t, 1, ack[0]["seq"])

	for _, tc := range []struct{ data, want string }{
		{`{"text":"   "}`, "cannot be empty"},
		{`{"text":"` + strings.Repeat("y", maxNoteLen+1) + `"}`, "at most 280"},
		{`"just a string"`, `{"text": "..."}`},
		{`{"text":3}`, `{"text": "..."}`},
	} {
		write(t, a, `{"type":"publish","id":"bad","data":`+tc.data+`}`)
		e := readUntil(t, a, 1, "error")[0]
		assert.Equal(t, "invalid", e["code"])
		assert.Equal(t, "bad", e["id"])
		assert.Contains(t, e["message"], tc.want)
	}
	assert.EqualValues(t, 1, ts.app.session().Stats().Head, "refused notes are not appended")
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	ts := startServer(t, nil)
	c, msgs := dial(t, ts.wsURL("?user=a"))
	require.Equal(t, "welcome", msgs[0]["type"])

	// Read until the close, as a client does: the close handshake needs the
	// client to answer the server's close frame.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()

	start := time.Now()
	require.NoError(t, ts.stop())
	assert.Less(t, time.Since(start), 3*time.Second, "the close handshake completed without waiting for a timeout")
	err := <-closed
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "err: %v", err)

	_, err = ts.app.session().Publish(ctx, []byte(`{"text":"late"}`))
	assert.ErrorIs(t, err, fanout.ErrClosed)
	_, err = net.DialTimeout("tcp", ts.addr, time.Second)
	assert.Error(t, err, "the listener is closed")
}

func TestPageURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080/",
		"0.0.0.0:9000":   "http://localhost:9000/",
		"[::]:9000":      "http://localhost:9000/",
		"[::1]:9000":     "http://[::1]:9000/",
	} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		assert.Equal(t, want, pageURL(tcp), addr)
	}
}

func TestRunStopsOnListenerError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = run(context.Background(), ln, slog.New(slog.DiscardHandler), config{})
	require.Error(t, err)
	assert.False(t, errors.Is(err, http.ErrServerClosed))
}

func TestListenHosts(t *testing.T) {
	for addr, want := range map[string][]string{
		"127.0.0.1:8080": {"127.0.0.1:8080", "localhost:8080"},
		"[::1]:8080":     {"[::1]:8080", "localhost:8080"},
		"0.0.0.0:9000":   {"localhost:9000", "127.0.0.1:9000", "[::1]:9000"},
		"10.1.2.3:80":    {"10.1.2.3:80", "collab.example.com"},
	} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		var extra []string
		if addr == "10.1.2.3:80" {
			extra = []string{" collab.example.com", ""}
		}
		assert.Equal(t, want, listenHosts(tcp, extra), addr)
	}
}

// TestOnlyOwnHost: the WebSocket answers requests for the address the
// example listens on and refuses others with 403, even when the Origin
// matches the foreign Host, as it does on a page whose domain an attacker
// re-pointed to this address (DNS rebinding).
func TestOnlyOwnHost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, ln, slog.New(slog.DiscardHandler), config{hosts: []string{"collab.example.com"}})
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	status := func(host string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/ws?user=ann", nil)
		require.NoError(t, err)
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.2:" + port, "localhost:1"} {
		assert.Equal(t, http.StatusForbidden, status(host), host)
	}
	// A plain GET is not an upgrade: past the host check, it gets 426.
	for _, host := range []string{addr, "localhost:" + port, "collab.example.com", "collab.example.com:443"} {
		assert.Equal(t, http.StatusUpgradeRequired, status(host), host)
	}
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?user=ann", nil)
	require.NoError(t, err)
	_ = c.CloseNow()
}

// TestServerTimeouts: the example's http.Server bounds every stage a client
// could stall in, idle keep-alive connections included, and WebSockets
// outlive those bounds.
func TestServerTimeouts(t *testing.T) {
	a, err := newApp(slog.New(slog.DiscardHandler), config{})
	require.NoError(t, err)
	assert.Positive(t, a.srv.ReadHeaderTimeout, "ReadHeaderTimeout")
	assert.Positive(t, a.srv.ReadTimeout, "ReadTimeout")
	assert.Positive(t, a.srv.IdleTimeout, "IdleTimeout")

	// The same server with the bounds shortened, to see them act.
	a.srv.ReadTimeout = 300 * time.Millisecond
	a.srv.IdleTimeout = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{app: a, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- a.serve(ctx, ln) }()
	t.Cleanup(func() { _ = ts.stop() })

	nc, err := net.Dial("tcp", ts.addr)
	require.NoError(t, err)
	defer nc.Close()
	_, err = io.WriteString(nc, "GET /style.css HTTP/1.1\r\nHost: "+ts.addr+"\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.Copy(io.Discard, nc) // the response, then the end of the idle connection
	require.NoError(t, err, "the server should close an idle keep-alive connection")

	c, _ := dial(t, ts.wsURL("?user=ann"))
	time.Sleep(600 * time.Millisecond) // past the read bound of a plain request
	write(t, c, `{"type":"publish","id":"p1","data":{"text":"still here"}}`)
	readUntil(t, c, 1, "ack")
}

// Each document has its page at /d/NAME/ and its own session at
// /d/NAME/ws; the default document is the one at / and /ws.
func TestDocuments(t *testing.T) {
	ts := startServer(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path     string
		status   int
		contains string
	}{
		{"/d/notes/?user=alice", http.StatusOK, `src="docs.js"`},
		{"/d/notes/app.js", http.StatusOK, "PROTOCOL.md"},
		{"/d/notes/docs.js", http.StatusOK, "/d/NAME/ws"},
		{"/d/notes?user=alice", http.StatusFound, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := noRedirect.Get("http://" + ts.addr + tc.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode)
			assert.Contains(t, string(body), tc.contains)
			if tc.status == http.StatusFound {
				assert.Equal(t, "/d/notes/?user=alice", resp.Header.Get("Location"))
			}
		})
	}

	base := "ws://" + ts.addr
	notes, msgs := dial(t, base+"/d/notes/ws?user=a")
	assert.Equal(t, "notes", msgs[0]["session"])
	main, msgs := dial(t, ts.wsURL("?user=a"))
	assert.Equal(t, "collab", msgs[0]["session"])
	_, msgs = dial(t, base+"/d/collab/ws?user=b")
	assert.Equal(t, ts.app.session().Epoch(), msgs[0]["epoch"], "/d/collab/ws is the default document")

	write(t, notes, `{"type":"publish","id":"n1","data":{"text":"in notes"}}`)
	ev := readUntil(t, notes, 1, "event")
	assert.EqualValues(t, 1, ev[0]["seq"])
	write(t, main, `{"type":"publish","id":"m1","data":{"text":"in main"}}`)
	ev = readUntil(t, main, 1, "event")
	assert.EqualValues(t, 1, ev[0]["seq"], "each document has its own sequence")
	assert.Equal(t, "in main", ev[0]["data"].(map[string]any)["text"])

	// A new page of each document gets that document's notes, and only
	// them, in its snapshot.
	for _, tc := range []struct{ url, text string }{
		{base + "/d/notes/ws?user=c", "in notes"},
		{ts.wsURL("?user=c"), "in main"},
	} {
		require.Eventually(t, func() bool {
			c, msgs := dial(t, tc.url)
			defer c.CloseNow()
			if len(msgs) == 1 {
				msgs = append(msgs, readMessages(t, c)...)
			}
			require.Equal(t, "snapshot", msgs[1]["type"], tc.url)
			notes := msgs[1]["data"].(map[string]any)["notes"].([]any)
			if len(notes) == 0 {
				return false // the notes have not followed the note yet
			}
			require.Len(t, notes, 1, tc.url)
			assert.Equal(t, tc.text, notes[0].(map[string]any)["data"].(map[string]any)["text"], tc.url)
			return true
		}, 5*time.Second, 10*time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, base+"/d/no%20spaces/ws?user=a", nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
