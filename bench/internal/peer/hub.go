package peer

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fanout-go/fanout/bench/internal/load"
)

// The hub is the chat-style broadcast a Go team writes by hand with
// gorilla/websocket: one hub goroutine owns the set of clients; each client
// has a buffered send channel, a write pump that batches what is queued
// into one frame (newline-separated) and pings, and a read pump that
// watches for pongs. A client whose channel is full is dropped: the hub
// never blocks on a slow reader, and never tells it what it missed.
const (
	hubSendBuffer = 256
	hubPongWait   = 60 * time.Second
	hubPingPeriod = hubPongWait * 9 / 10
	hubMaxMessage = 512
)

var hubNewline = []byte{'\n'}

type hub struct {
	upgrader   websocket.Upgrader
	writeWait  time.Duration
	clients    map[*hubClient]bool
	register   chan *hubClient
	unregister chan *hubClient
	broadcast  chan []byte
	quit       chan struct{}
	count      atomic.Int64
}

type hubClient struct {
	hub  *hub
	conn *websocket.Conn
	send chan []byte
}

func newHub(c Config) (Server, error) {
	h := &hub{
		upgrader:   websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024},
		writeWait:  c.WriteTimeout,
		clients:    make(map[*hubClient]bool),
		register:   make(chan *hubClient),
		unregister: make(chan *hubClient),
		broadcast:  make(chan []byte),
		quit:       make(chan struct{}),
	}
	go h.run()
	return h, nil
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
			h.count.Add(1)
		case c := <-h.unregister:
			if h.clients[c] {
				h.remove(c)
			}
		case msg := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- msg:
				default:
					h.remove(c)
				}
			}
		case <-h.quit:
			for c := range h.clients {
				h.remove(c)
			}
			return
		}
	}
}

func (h *hub) remove(c *hubClient) {
	delete(h.clients, c)
	close(c.send)
	h.count.Add(-1)
}

func (h *hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &hubClient{hub: h, conn: conn, send: make(chan []byte, hubSendBuffer)}
	select {
	case h.register <- c:
	case <-h.quit:
		_ = conn.Close()
		return
	}
	go c.writePump()
	go c.readPump()
}

func (h *hub) Publish(data []byte) error {
	select {
	case h.broadcast <- data:
	case <-h.quit:
	}
	return nil
}

func (h *hub) Conns() int { return int(h.count.Load()) }

func (h *hub) Position() (load.Resume, bool) { return load.Resume{}, false }

func (h *hub) Close() { close(h.quit) }

// readPump reads until the connection fails; it only exists to process
// pongs and the close handshake (clients send nothing else here).
func (c *hubClient) readPump() {
	defer func() {
		select {
		case c.hub.unregister <- c:
		case <-c.hub.quit:
		}
		_ = c.conn.Close()
	}()
	c.conn.SetReadLimit(hubMaxMessage)
	_ = c.conn.SetReadDeadline(time.Now().Add(hubPongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(hubPongWait))
	})
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writePump is the only writer of the connection.
func (c *hubClient) writePump() {
	ticker := time.NewTicker(hubPingPeriod)
	defer func() {
		ticker.Stop()
		_ = c.conn.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(c.hub.writeWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			w, err := c.conn.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			_, _ = w.Write(msg)
			for range len(c.send) {
				_, _ = w.Write(hubNewline)
				_, _ = w.Write(<-c.send)
			}
			if err := w.Close(); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(c.hub.writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}
