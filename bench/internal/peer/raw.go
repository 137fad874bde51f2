package peer

import (
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/fanout-go/fanout/bench/internal/load"
)

// rawServer is the floor: no WebSocket library. The handshake and the
// server-side framing (unmasked text frames) are hand-rolled over net.Conn;
// each published message is framed once and the same bytes are written to
// every socket in turn, one write per message per connection, by the
// publishing goroutine. No write deadline, no queue, no batching. Each
// connection has one goroutine reading (and discarding) what the client
// sends, to notice when it goes away.
type rawServer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func newRaw(Config) (Server, error) { return &rawServer{}, nil }

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func (s *rawServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if _, err := nc.Write([]byte(resp)); err != nil {
		_ = nc.Close()
		return
	}
	s.mu.Lock()
	s.conns = append(s.conns, nc)
	s.mu.Unlock()
	var buf [256]byte
	for {
		if _, err := brw.Read(buf[:]); err != nil {
			break
		}
	}
	s.remove(nc)
}

func (s *rawServer) remove(nc net.Conn) {
	_ = nc.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.conns {
		if c == nc {
			last := len(s.conns) - 1
			s.conns[i] = s.conns[last]
			s.conns[last] = nil
			s.conns = s.conns[:last]
			return
		}
	}
}

// Publish frames data once and writes the frame to every connection.
func (s *rawServer) Publish(data []byte) error {
	frame := make([]byte, 0, len(data)+10)
	frame = append(frame, 0x81)
	switch n := len(data); {
	case n < 126:
		frame = append(frame, byte(n))
	case n < 1<<16:
		frame = append(frame, 126, byte(n>>8), byte(n))
	default:
		frame = append(frame, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	frame = append(frame, data...)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_, _ = c.Write(frame) // a failed connection's reader removes it
	}
	return nil
}

func (s *rawServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *rawServer) Position() (load.Resume, bool) { return load.Resume{}, false }

func (s *rawServer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
}
