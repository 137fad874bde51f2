package fanout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// maxEpochLen bounds the epoch a client may send; ours are 16 bytes.
const maxEpochLen = 64

// ServeHTTP authenticates the request, enforces the session's limits,
// upgrades it to a WebSocket and starts serving the connection, in a
// goroutine of its own; it returns once the connection is established.
// Before the upgrade it answers 400 for a malformed resume position, 401
// when the authentication hook refuses (403, or another 4xx, when its
// error says so: see WithAuthenticate), 403 for a foreign origin or a host
// not listed by WithHosts, and 503 at the connection limit or after
// Shutdown, and on a shared log 503 while the session has not caught up
// with a resume position the log has.
func (s *Session) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.hosts != nil && !hostAllowed(s.cfg.hosts, r.Host) {
		http.Error(w, "host not allowed", http.StatusForbidden)
		return
	}
	pos, err := parseResume(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, ok := authenticate(w, r, s.cfg.authenticate, s.cfg.logger)
	if !ok {
		return
	}
	if !s.awaitReady(r.Context()) || !s.admit() {
		http.Error(w, "session unavailable", http.StatusServiceUnavailable)
		return
	}
	s.upgrade(w, r, id, pos)
}

// authenticate runs the authentication hook fn, if any, on r. When it
// refuses, the request is answered with the status its error asks for
// (authStatus), never with the error's text, and ok is false.
func authenticate(w http.ResponseWriter, r *http.Request, fn func(*http.Request) (Identity, error), logger *slog.Logger) (id Identity, ok bool) {
	if fn == nil {
		return Identity{}, true
	}
	id, err := fn(r)
	if err != nil {
		code := authStatus(err)
		logger.Debug("fanout: authentication refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "err", err)
		http.Error(w, strings.ToLower(http.StatusText(code)), code)
		return Identity{}, false
	}
	return id, true
}

// upgrade upgrades an admitted request and starts serving the connection.
// The slot admit reserved is given back exactly once: here if the upgrade
// fails, otherwise when the connection's goroutine ends.
func (s *Session) upgrade(w http.ResponseWriter, r *http.Request, id Identity, pos resumePos) {
	if !s.awaitPosition(r.Context(), pos) {
		s.release()
		http.Error(w, "catching up with the log", http.StatusServiceUnavailable)
		return
	}
	guard := newFrameGuard(s.cfg.maxMessageSize, rate.NewLimiter(rate.Limit(s.cfg.inboundRate), s.cfg.inboundBurst))
	hw := &hijackRecorder{ResponseWriter: w, guard: guard, writeTimeout: s.cfg.writeTimeout}
	var c *Conn
	opts := s.accept
	// Client pings are read after c is set (by the connection's reader, or
	// during a refused connection's close handshake); the writer answers
	// them (Conn.queuePong).
	opts.OnPingReceived = func(_ context.Context, p []byte) bool {
		c.queuePong(p)
		return false
	}
	ws, err := websocket.Accept(hw, r, &opts)
	if err != nil {
		s.cfg.logger.Debug("fanout: upgrade refused", "session", s.name, "remote", r.RemoteAddr, "err", err)
		s.release()
		return
	}
	ws.SetReadLimit(s.cfg.maxMessageSize)
	c = newConn(s, ws, hw.conn, &hw.sw.mu, id, r.RemoteAddr)
	hw.sw.c = c
	c.guard = guard
	if err := s.join(c, pos); err != nil {
		c.abandon()
		code, reason := CloseGoingAway, "server shutting down"
		if !errors.Is(err, ErrClosed) {
			s.cfg.logger.Error("fanout: no snapshot for a connection", "session", s.name, "remote", r.RemoteAddr, "err", err)
			code, reason = CloseInternalError, "snapshot unavailable"
		}
		closeWithin(ws, hw.conn, code, reason, s.cfg.writeTimeout)
		s.release()
		return
	}
	// The connection gets a goroutine of its own, and this one returns, so
	// that net/http's request, response and connection state are freed:
	// an idle connection then holds only its reader, with a small stack.
	go c.run()
}

// run is the connection's reader goroutine, from the join hook to the
// teardown. A panicking hook is logged, like net/http logs a panicking
// handler, and ends only this connection; teardown is deferred so that it
// cannot leave a ghost connection either.
func (c *Conn) run() {
	s := c.s
	defer s.release()
	defer func() {
		if p := recover(); p != nil {
			s.cfg.logger.Error("fanout: panic in a hook", "session", s.name, "conn", c.id, "panic", p)
		}
	}()
	defer c.leave()
	if s.cfg.onJoin != nil {
		s.cfg.onJoin(c)
	}
	c.serve()
}

// leave ends the connection and detaches it from the session.
func (c *Conn) leave() {
	c.finish()
	c.s.unregister(c)
	c.s.noteConnClosed(c)
	c.s.rememberPosition(c)
	if c.s.cfg.onLeave != nil {
		c.s.cfg.onLeave(c)
	}
}

// admit reserves a connection slot; release gives it back.
// In a Hub, the hub's connection limit applies as well.
func (s *Session) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.admitted >= s.cfg.maxConns || s.shared != nil && !s.ready {
		return false
	}
	if s.hub != nil && !s.hub.admitConn() {
		return false
	}
	s.admitted++
	s.wg.Add(1)
	return true
}

func (s *Session) release() {
	s.mu.Lock()
	s.admitted--
	s.left = true
	s.mu.Unlock()
	if s.hub != nil {
		s.hub.releaseConn()
	}
	s.wg.Done()
}

// hostAllowed reports whether the request's Host matches one of hosts (see
// WithHosts).
func hostAllowed(hosts []string, host string) bool {
	name, port := splitHost(host)
	for _, h := range hosts {
		hn, hp := splitHost(h)
		if strings.EqualFold(hn, name) && (hp == "" || hp == port) {
			return true
		}
	}
	return false
}

// splitHost splits "name:port", "[v6]:port", "name", "[v6]" or "v6" into
// the name, without brackets, and the port, "" when there is none.
func splitHost(h string) (name, port string) {
	if n, p, err := net.SplitHostPort(h); err == nil {
		return n, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), ""
}

func validHosts(hosts []string) bool {
	for _, h := range hosts {
		if n, _ := splitHost(h); n == "" {
			return false
		}
	}
	return len(hosts) > 0
}

// resumePos is a client's requested starting point.
type resumePos struct {
	resume     bool
	after      uint64
	epoch      string // empty: the current epoch
	byIdentity bool   // the position is the identity's (WithResumeByIdentity)
}

func parseResume(q url.Values) (resumePos, error) {
	afters, epochs := q["after"], q["epoch"]
	if len(afters) > 1 || len(epochs) > 1 {
		return resumePos{}, errors.New("after and epoch may be given once each")
	}
	if len(afters) == 0 {
		if len(epochs) != 0 {
			return resumePos{}, errors.New("epoch given without after")
		}
		return resumePos{}, nil
	}
	a := afters[0]
	if a == "" || len(a) > 20 || a[0] < '0' || a[0] > '9' {
		return resumePos{}, fmt.Errorf("after must be a decimal seq, got %q", truncate(a, 24))
	}
	after, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return resumePos{}, fmt.Errorf("after must be a decimal seq, got %q", truncate(a, 24))
	}
	p := resumePos{resume: true, after: after}
	if len(epochs) == 1 {
		if n := len(epochs[0]); n == 0 || n > maxEpochLen {
			return resumePos{}, fmt.Errorf("epoch must be 1-%d bytes, got %d", maxEpochLen, n)
		}
		p.epoch = epochs[0]
	}
	return p, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// hijackRecorder keeps the net.Conn under a WebSocket, so the session can
// drop a connection at once (a stalled peer, a forced shutdown) where a
// close handshake could wait seconds.
type hijackRecorder struct {
	http.ResponseWriter
	conn  net.Conn
	sw    *socketWriter // what the WebSocket library writes through
	guard *frameGuard   // what it reads through

	writeTimeout time.Duration // bounds each of the library's writes
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return c, brw, err
	}
	h.conn = c
	h.sw = &socketWriter{nc: c, timeout: h.writeTimeout}
	// net/http hands over its 4 KiB read and write buffers. The WebSocket
	// library keeps them for the connection's life, but it only reads
	// small client frames through the reader (larger reads bypass it) and
	// writes only close frames through the writer; events go straight to
	// the socket (Conn.offer, Conn.write). Smaller buffers save most of 8 KiB per
	// connection. Everything the library reads passes the frame guard,
	// bytes a client sent ahead of the upgrade first.
	h.guard.src = c
	r := brw.Reader
	if n := r.Buffered(); n > 0 {
		b, _ := r.Peek(n)
		h.guard.src = io.MultiReader(bytes.NewReader(bytes.Clone(b)), c)
	}
	// The library reads the client from the net.Conn it is handed
	// (it resets the reader onto it), so that is where the guard goes.
	gc := guardedConn{Conn: c, guard: h.guard}
	r = bufio.NewReaderSize(gc, hijackReadBuffer)
	return gc, bufio.NewReadWriter(r, bufio.NewWriterSize(h.sw, hijackWriteBuffer)), nil
}

// guardedConn is a hijacked connection whose reads pass the frame guard.
type guardedConn struct {
	net.Conn
	guard *frameGuard
}

func (g guardedConn) Read(p []byte) (int, error) { return g.guard.Read(p) }

// The buffers a hijacked connection gets (see hijackRecorder.Hijack). A
// close frame, at most 127 bytes, fits the writer's and goes out in one
// write.
const (
	hijackReadBuffer  = 1 << 10
	hijackWriteBuffer = 256
)

func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }
