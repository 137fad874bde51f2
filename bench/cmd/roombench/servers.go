package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/centrifugal/centrifuge"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/bench/internal/peer"
)

// roomServer is a server with many rooms: clients of room i connect to
// path(i) (and, for centrifuge, subscribe to channel(i)); Publish sends to
// one room.
type roomServer interface {
	http.Handler
	Publish(room int, data []byte) error
	Open(rooms int) // make the rooms exist without connections, where that means anything
	Close()
}

func roomName(i int) string { return fmt.Sprint("room-", i) }

// fanoutRooms is one fanout Hub, a session per room; presence off, as in
// the single-session benchmark, everything else at its default.
type fanoutRooms struct {
	hub *fanout.Hub
	mux *http.ServeMux
}

func newFanoutRooms(conns int) (roomServer, error) {
	h, err := fanout.NewHub(
		fanout.WithHubMaxConnections(conns),
		fanout.WithIdleTimeout(time.Hour),
		fanout.WithSessionOptions(func(string) []fanout.Option {
			return []fanout.Option{fanout.WithPresence(false)}
		}))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/r/{room}/ws", h)
	return &fanoutRooms{hub: h, mux: mux}, nil
}

func (f *fanoutRooms) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

func (f *fanoutRooms) Publish(room int, data []byte) error {
	_, err := f.hub.Publish(context.Background(), roomName(room), data)
	return err
}

func (f *fanoutRooms) Open(rooms int) {
	for i := range rooms {
		_, _ = f.hub.Open(roomName(i))
	}
}

func (f *fanoutRooms) Close() { _ = f.hub.Close() }

// centrifugeRooms is a centrifuge node, a channel per room, with history
// and recovery (what matches fanout's guarantees).
type centrifugeRooms struct {
	node *centrifuge.Node
	ws   http.Handler
	opts []centrifuge.PublishOption
}

func newCentrifugeRooms() (roomServer, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, err
	}
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: "bench"}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{Options: centrifuge.SubscribeOptions{EnableRecovery: true}}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return nil, err
	}
	return &centrifugeRooms{
		node: node,
		ws:   centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{WriteTimeout: 10 * time.Second}),
		opts: []centrifuge.PublishOption{centrifuge.WithHistory(10_000, time.Hour)},
	}, nil
}

func (c *centrifugeRooms) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.ws.ServeHTTP(w, r) }

func (c *centrifugeRooms) Publish(room int, data []byte) error {
	_, err := c.node.Publish(roomName(room), data, c.opts...)
	return err
}

func (c *centrifugeRooms) Open(int) {} // a channel without subscribers holds nothing

func (c *centrifugeRooms) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.node.Shutdown(ctx)
}

// gorillaRooms is the gorilla chat hub with rooms: a hub (its goroutine,
// its clients' channels and pumps) per room, made on first use.
type gorillaRooms struct {
	mu    sync.Mutex
	rooms map[string]peer.Server
	mux   *http.ServeMux
}

func newGorillaRooms() (roomServer, error) {
	g := &gorillaRooms{rooms: make(map[string]peer.Server), mux: http.NewServeMux()}
	g.mux.HandleFunc("/r/{room}/ws", func(w http.ResponseWriter, r *http.Request) {
		g.room(r.PathValue("room")).ServeHTTP(w, r)
	})
	return g, nil
}

func (g *gorillaRooms) room(name string) peer.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	h, ok := g.rooms[name]
	if !ok {
		h, _ = peer.NewGorillaHub(peer.Config{WriteTimeout: 10 * time.Second})
		g.rooms[name] = h
	}
	return h
}

func (g *gorillaRooms) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

func (g *gorillaRooms) Publish(room int, data []byte) error {
	return g.room(roomName(room)).Publish(data)
}

func (g *gorillaRooms) Open(rooms int) {
	for i := range rooms {
		g.room(roomName(i))
	}
}

func (g *gorillaRooms) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, h := range g.rooms {
		h.Close()
	}
}
