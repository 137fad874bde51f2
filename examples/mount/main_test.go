package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// trackingListener remembers the connections it accepted, so that the test
// can drop them all at once, as the end of the process would.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// exit closes every connection the service accepted: what the operating
// system does when main returns.
func (l *trackingListener) exit() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
}

// The README's snippet, run as it is with 200 real clients: when serve
// returns (and main with it, which the test stands for by dropping every
// connection the service had), every client has got its close frame with
// 1001, none saw its socket just drop.
func TestShutdownClosesEveryClientWith1001(t *testing.T) {
	const clients = 200
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &trackingListener{Listener: inner}
	ctx, sigterm := context.WithCancel(context.Background())
	defer sigterm()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln) }()

	base := "http://" + ln.Addr().String()
	hdr := http.Header{"X-User": {"ann"}}
	closes := make(chan error, clients)
	for range clients {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{HTTPHeader: hdr})
		cancel()
		require.NoError(t, err)
		t.Cleanup(func() { _ = ws.CloseNow() })
		go func() {
			for {
				if _, _, err := ws.Read(context.Background()); err != nil {
					closes <- err
					return
				}
			}
		}()
	}
	// A publish through the service's own handler.
	resp, err := http.Post(base+"/notes", "application/json", strings.NewReader(`{"text":"hi"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, resp.Body.Close())

	sigterm()
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return")
	}
	ln.exit()

	codes := map[websocket.StatusCode]int{}
	for range clients {
		select {
		case err := <-closes:
			codes[websocket.CloseStatus(err)]++
		case <-time.After(10 * time.Second):
			t.Fatal("a client's connection did not end")
		}
	}
	assert.Equal(t, map[websocket.StatusCode]int{websocket.StatusGoingAway: clients}, codes,
		"close codes seen by the clients (-1: the socket dropped without a close frame)")
}

// An unauthenticated request is refused before the upgrade.
func TestUnauthenticated(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln) }()
	defer func() {
		cancel()
		require.NoError(t, <-served)
	}()
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	_, resp, err := websocket.Dial(dctx, "ws://"+ln.Addr().String()+"/ws", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// goBlocks returns the ```go code blocks of a Markdown file, after the
// first line that starts with after.
func goBlocks(t *testing.T, path, after string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	text := "\n" + string(b)
	i := strings.Index(text, "\n"+after)
	require.GreaterOrEqual(t, i, 0, "%s has no %q", path, after)
	var out []string
	for _, m := range regexp.MustCompile("(?s)\n```go\n(.*?)```\n").FindAllStringSubmatch(text[i:], -1) {
		out = append(out, m[1])
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// The README's mounting snippet is this program, byte for byte, and every
// line of its opening snippet is a line of it: the snippets cannot drift
// from the code this package's tests run.
func TestREADMESnippets(t *testing.T) {
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	mount := goBlocks(t, "../../README.md", "## Mounting into an existing service")
	require.NotEmpty(t, mount)
	assert.Equal(t, string(src), mount[0], "README.md's mounting snippet must be examples/mount/main.go verbatim")

	lines := map[string]bool{}
	for l := range strings.SplitSeq(string(src), "\n") {
		lines[strings.TrimSpace(spaces.ReplaceAllString(l, " "))] = true
	}
	intro := goBlocks(t, "../../README.md", "# fanout")
	require.NotEmpty(t, intro)
	for l := range strings.SplitSeq(strings.TrimSpace(intro[0]), "\n") {
		assert.True(t, lines[strings.TrimSpace(spaces.ReplaceAllString(l, " "))], "README.md's opening snippet line %q is not in examples/mount/main.go", l)
	}
}
