package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowser runs e2e/collab.e2e.mjs: two real headless Chromium pages
// against the example, through a proxy the script controls (drop, stall,
// restart). It needs node, e2e/node_modules (npm ci) and Chromium; run
// e2e/setup.sh to install them. Without them it is skipped, unless
// FANOUT_BROWSER_TEST=require makes that a failure.
func TestBrowser(t *testing.T) {
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "playwright-core")); err != nil {
		missing = append(missing, "e2e/node_modules/playwright-core")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		missing = append(missing, chromiumPath)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("browser test needs %s: run examples/collab/e2e/setup.sh", strings.Join(missing, ", "))
		if os.Getenv("FANOUT_BROWSER_TEST") == "require" {
			t.Fatal(msg + " (FANOUT_BROWSER_TEST=require)")
		}
		browserSkipped = "it needs " + strings.Join(missing, ", ")
		uncached()
		t.Skip(msg)
	}
	if testing.Short() && os.Getenv("FANOUT_BROWSER_TEST") != "require" {
		browserSkipped = "of -short"
		uncached()
		t.Skip("browser test skipped in -short mode")
	}

	base, control := startHarness(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "collab.e2e.mjs")
	cmd.Dir = "e2e"
	cmd.Env = append(os.Environ(),
		"COLLAB_URL="+base,
		"COLLAB_CONTROL="+control,
	)
	cmd.WaitDelay = 10 * time.Second // Chromium children must not hold the pipes open
	out, err := cmd.CombinedOutput()
	t.Logf("node e2e/collab.e2e.mjs:\n%s", out)
	if ctx.Err() != nil {
		t.Fatalf("browser test timed out: %v", ctx.Err())
	}
	require.NoError(t, err, "browser test failed")
}

// browserSkipped says why TestBrowser was skipped, if it was; TestMain
// announces it once the tests have run.
var browserSkipped string

// announceBrowserSkip says that TestBrowser was skipped, and how to run
// it, where a person running go test sees it. go test ./... shows nothing
// of a passing package's output without -v, so the line also goes to the
// terminal (/dev/tty) when there is one.
func announceBrowserSkip() {
	if browserSkipped == "" {
		return
	}
	line := browserSkipNotice(browserSkipped)
	fmt.Print(line)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		_, _ = io.WriteString(tty, line)
		_ = tty.Close()
	}
}

// uncached keeps go test from caching this run's result. go test replays a
// cached pass without running the tests, so a skip would be announced once
// and then never again. It caches nothing that read a file of the module
// changed within the last seconds: so the test reads one it has just
// written (e2e/.browser-test-skipped, ignored by git, left for go test to
// look at after the run).
func uncached() {
	mark := filepath.Join("e2e", ".browser-test-skipped")
	if os.WriteFile(mark, []byte("TestBrowser skipped\n"), 0o644) == nil {
		if f, err := os.Open(mark); err == nil {
			_ = f.Close()
		}
	}
}

// browserSkipNotice is the line that announces a skipped TestBrowser.
func browserSkipNotice(why string) string {
	return "examples/collab: the browser test was SKIPPED because " + why +
		"; to run it: bash examples/collab/e2e/setup.sh && go test -C examples/collab -race ." +
		" (FANOUT_BROWSER_TEST=require makes a skip a failure)\n"
}

// startHarness runs the example behind a proxy, with the control server
// the scripts call, until the test ends. It returns the page's base URL
// (through the proxy) and the control server's URL. The server log is
// shown when the test fails.
func startHarness(t *testing.T) (base, control string) {
	t.Helper()
	logs := &lockedBuffer{}
	h := &harness{
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// Fast heartbeats, so that pongs and dead-server detection
		// (heartbeat + the client's timeout) are exercised in seconds.
		opts: []fanout.Option{
			fanout.WithHeartbeat(time.Second, time.Second),
			fanout.WithWriteTimeout(2 * time.Second),
		},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})

	first, err := h.start()
	require.NoError(t, err)
	t.Cleanup(h.stopAll)

	px, err := newProxy(first.addr)
	require.NoError(t, err)
	t.Cleanup(px.close)
	h.proxy = px

	ctl := &http.Server{Handler: h.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
	ctlLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = ctl.Serve(ctlLn) }()
	t.Cleanup(func() { _ = ctl.Close() })
	return "http://" + px.addr(), "http://" + ctlLn.Addr().String()
}

// harness is the example server as the browser test runs it: restartable
// behind a proxy that keeps the pages' URL.
type harness struct {
	logger *slog.Logger
	opts   []fanout.Option
	proxy  *proxy

	mu      sync.Mutex
	current *testServer
	all     []*testServer
}

func (h *harness) start() (*testServer, error) {
	ts, err := newTestServer(h.logger, h.opts...)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.current = ts
	h.all = append(h.all, ts)
	h.mu.Unlock()
	return ts, nil
}

func (h *harness) server() *testServer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}

func (h *harness) stopAll() {
	h.mu.Lock()
	all := h.all
	h.mu.Unlock()
	for _, ts := range all {
		_ = ts.stop()
	}
}

// restart shuts the server down gracefully (pages get 1001), starts a new
// one, whose in-memory history has a new epoch, publishes notes into it
// and only then lets the pages reach it.
func (h *harness) restart(notes int) error {
	h.proxy.setHold(true)
	defer h.proxy.setHold(false)
	if err := h.server().stop(); err != nil {
		return err
	}
	ts, err := h.start()
	if err != nil {
		return err
	}
	for i := 1; i <= notes; i++ {
		if err := publishNote(ts.app.session(), fmt.Sprintf("after restart %d", i)); err != nil {
			return err
		}
	}
	h.proxy.setBackend(ts.addr)
	return nil
}

func publishNote(s *fanout.Session, text string) error {
	data, err := json.Marshal(note{Text: text, At: time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	_, err = s.Publish(context.Background(), data)
	return err
}

// controlHandler is what the e2e script calls (POST) to do things to the
// pages' connections that a browser cannot do to itself.
//
//	/drop?hold=MS      drop every WebSocket (the page sees 1006) and refuse
//	                   new connections for MS milliseconds
//	/hold, /release    refuse new connections from now on; stop refusing
//	/stall?user=NAME   black-hole NAME's WebSockets: nothing passes either
//	                   way, nothing is closed
//	/deafen?user=NAME  black-hole what the server sends on NAME's
//	                   WebSockets; what NAME sends still arrives
//	/restart?notes=N   restart the server (new epoch) with N notes in it
//	/publish?text=T&n=N  publish N notes (default 1) from the server; with
//	                   n, each text ends with its number
//	/flood?rate=R&secs=S  publish R notes a second for S seconds, then
//	                   answer {"published", "head", "ms"}
//	/head              (GET) {"head", "epoch"} of the current server
func (h *harness) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("hold"))
		if ms > 0 {
			h.proxy.holdFor(time.Duration(ms) * time.Millisecond)
		}
		n := h.proxy.drop()
		fmt.Fprintf(w, "dropped %d\n", n)
	})
	mux.HandleFunc("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		h.proxy.setHold(true)
		fmt.Fprintln(w, "holding")
	})
	mux.HandleFunc("POST /release", func(w http.ResponseWriter, r *http.Request) {
		h.proxy.setHold(false)
		fmt.Fprintln(w, "released")
	})
	mux.HandleFunc("POST /stall", func(w http.ResponseWriter, r *http.Request) {
		n := h.proxy.stall(r.URL.Query().Get("user"))
		fmt.Fprintf(w, "stalled %d\n", n)
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("notes"))
		if err := h.restart(n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "restarted, epoch %s\n", h.server().app.session().Epoch())
	})
	mux.HandleFunc("POST /deafen", func(w http.ResponseWriter, r *http.Request) {
		n := h.proxy.deafen(r.URL.Query().Get("user"))
		fmt.Fprintf(w, "deafened %d\n", n)
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		text := r.URL.Query().Get("text")
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			n = 0
		}
		for i := 1; i <= max(n, 1); i++ {
			t := text
			if n > 0 {
				t = fmt.Sprintf("%s %d", text, i)
			}
			if err := publishNote(h.server().app.session(), t); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "published")
	})
	mux.HandleFunc("POST /flood", func(w http.ResponseWriter, r *http.Request) {
		rate, _ := strconv.Atoi(r.URL.Query().Get("rate"))
		secs, _ := strconv.ParseFloat(r.URL.Query().Get("secs"), 64)
		if rate <= 0 || secs <= 0 {
			http.Error(w, "rate and secs must be positive", http.StatusBadRequest)
			return
		}
		n, took, err := h.flood(rate, time.Duration(secs*float64(time.Second)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st := h.server().app.session().Stats()
		_ = json.NewEncoder(w).Encode(map[string]any{"published": n, "head": st.Head, "ms": took.Milliseconds()})
	})
	mux.HandleFunc("GET /head", func(w http.ResponseWriter, r *http.Request) {
		st := h.server().app.session().Stats()
		_ = json.NewEncoder(w).Encode(map[string]any{"head": st.Head, "epoch": st.Epoch})
	})
	return mux
}

// flood publishes rate notes a second for d, keeping to the rate however
// late the ticker wakes. The notes are small, as a chat message would be.
func (h *harness) flood(rate int, d time.Duration) (int, time.Duration, error) {
	s := h.server().app.session()
	total := int(float64(rate) * d.Seconds())
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	n := 0
	for n < total {
		due := min(total, int(float64(rate)*time.Since(start).Seconds())+1)
		for ; n < due; n++ {
			data := fmt.Appendf(nil, `{"text":"flood %d"}`, n+1)
			if _, err := s.Publish(context.Background(), data); err != nil {
				return n, time.Since(start), err
			}
		}
		<-tick.C
	}
	return n, time.Since(start), nil
}

// proxy forwards TCP connections to the current backend and can do to them
// what networks do: drop them, black-hole them, refuse new ones for a while.
// Restarting the server behind it keeps the pages' URL (and origin).
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu        sync.Mutex
	backend   string
	hold      bool
	holdUntil time.Time
	links     map[*link]struct{}
	closed    bool
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	ws             bool   // a WebSocket: its request was for /ws
	user           string // the request's ?user=
	stalled        atomic.Bool
	deaf           atomic.Bool // what the server sends is discarded
}

func newProxy(backend string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, backend: backend, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *proxy) serve(client net.Conn) {
	defer client.Close()
	p.mu.Lock()
	backend, refuse := p.backend, p.hold || time.Now().Before(p.holdUntil)
	p.mu.Unlock()
	if refuse {
		return
	}
	// The request line says what the connection is for.
	br := bufio.NewReader(client)
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	_ = client.SetReadDeadline(time.Time{})
	server, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	l := &link{client: client, server: server}
	if f := strings.Fields(line); len(f) >= 2 {
		if u, err := url.ParseRequestURI(f[1]); err == nil {
			l.ws = u.Path == "/ws"
			l.user = u.Query().Get("user")
		}
	}
	if !p.add(l) {
		return
	}
	defer p.remove(l)
	if _, err := io.WriteString(server, line); err != nil {
		return
	}
	up := make(chan struct{})
	go func() {
		defer close(up)
		l.pipe(server, br, &l.stalled)
		// The client is gone: so is the connection.
		_ = client.Close()
		_ = server.Close()
	}()
	l.pipe(client, server, &l.deaf)
	// The server is gone. A black-holed client hears nothing about it: it
	// stays connected until it gives up by itself.
	if !l.stalled.Load() {
		_ = client.Close()
	}
	<-up
}

// pipe copies src to dst, discarding everything once the link is stalled
// or discard is set.
func (l *link) pipe(dst io.Writer, src io.Reader, discard *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.stalled.Load() && !discard.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) add(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.links[l] = struct{}{}
	return true
}

func (p *proxy) remove(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// wsLinks returns the WebSocket links, of user only unless it is "".
func (p *proxy) wsLinks(user string) []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*link
	for l := range p.links {
		if l.ws && (user == "" || l.user == user) {
			out = append(out, l)
		}
	}
	return out
}

// drop closes every WebSocket at once, without a close frame.
func (p *proxy) drop() int {
	ls := p.wsLinks("")
	for _, l := range ls {
		_ = l.client.Close()
		_ = l.server.Close()
	}
	return len(ls)
}

func (p *proxy) stall(user string) int {
	ls := p.wsLinks(user)
	for _, l := range ls {
		l.stalled.Store(true)
	}
	return len(ls)
}

func (p *proxy) deafen(user string) int {
	ls := p.wsLinks(user)
	for _, l := range ls {
		l.deaf.Store(true)
	}
	return len(ls)
}

func (p *proxy) setHold(on bool) {
	p.mu.Lock()
	p.hold = on
	p.mu.Unlock()
}

func (p *proxy) holdFor(d time.Duration) {
	p.mu.Lock()
	p.holdUntil = time.Now().Add(d)
	p.mu.Unlock()
}

func (p *proxy) setBackend(addr string) {
	p.mu.Lock()
	p.backend = addr
	p.mu.Unlock()
}

// close stops accepting, closes every link and waits for its goroutines.
func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for l := range p.links {
		_ = l.client.Close()
		_ = l.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// lockedBuffer is an io.Writer safe for concurrent use, for the server log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The skip notice says why, and what to run to enable the test.
func TestBrowserSkipNotice(t *testing.T) {
	n := browserSkipNotice("it needs node")
	assert.Contains(t, n, "SKIPPED because it needs node")
	assert.Contains(t, n, "bash examples/collab/e2e/setup.sh")
	assert.Contains(t, n, "FANOUT_BROWSER_TEST=require")
	assert.True(t, strings.HasSuffix(n, "\n"))
	assert.Equal(t, 1, strings.Count(n, "\n"), "one line")
}
