package fanout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/coder/websocket"
)

// maxEpochLen bounds the epoch a client may send; ours are 16 bytes.
const maxEpochLen = 64

// ServeHTTP authenticates the request, enforces the session's limits,
// upgrades it to a WebSocket and serves the connection until it closes.
// Before the upgrade it answers 400 for a malformed resume position, 401
// when the authentication hook refuses, 403 for a foreign origin and 503 at
// the connection limit or after Shutdown.
func (s *Session) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pos, err := parseResume(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var id Identity
	if s.cfg.authenticate != nil {
		if id, err = s.cfg.authenticate(r); err != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if !s.admit() {
		http.Error(w, "session unavailable", http.StatusServiceUnavailable)
		return
	}
	defer s.release()

	hw := &hijackRecorder{ResponseWriter: w}
	var c *Conn
	opts := s.accept
	// Client pings are read by this goroutine, after c is set; the writer
	// answers them (see direct.go).
	opts.OnPingReceived = func(_ context.Context, p []byte) bool {
		c.queuePong(p)
		return false
	}
	ws, err := websocket.Accept(hw, r, &opts)
	if err != nil {
		s.cfg.logger.Debug("fanout: upgrade refused", "session", s.name, "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(s.cfg.maxMessageSize)
	c = newConn(s, ws, hw.conn, id, r.RemoteAddr)
	if !s.register(c, pos) {
		closeWithin(ws, hw.conn, CloseGoingAway, "server shutting down", s.cfg.writeTimeout)
		return
	}
	// Deferred, so that a panicking hook cannot leave a ghost connection.
	defer func() {
		c.finish()
		s.unregister(c)
		if s.cfg.onLeave != nil {
			s.cfg.onLeave(c)
		}
	}()
	if s.cfg.onJoin != nil {
		s.cfg.onJoin(c)
	}
	c.serve()
}

// admit reserves a connection slot; release gives it back.
func (s *Session) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.admitted >= s.cfg.maxConns {
		return false
	}
	s.admitted++
	s.wg.Add(1)
	return true
}

func (s *Session) release() {
	s.mu.Lock()
	s.admitted--
	s.mu.Unlock()
	s.wg.Done()
}

// resumePos is a client's requested starting point.
type resumePos struct {
	resume bool
	after  uint64
	epoch  string // empty: the current epoch
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
	conn net.Conn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = c
	return c, brw, err
}

func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }
