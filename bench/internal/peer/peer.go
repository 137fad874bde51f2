// Package peer holds the servers under test, each behind the same small
// interface: an http.Handler for the WebSocket endpoint and an in-process
// publish through the server's own API.
package peer

import (
	"fmt"
	"net/http"
	"time"

	"github.com/fanout-go/fanout/bench/internal/load"
)

// Server is one server under test.
type Server interface {
	// Handler serves the WebSocket endpoint.
	http.Handler
	// Publish sends data (JSON, owned by the server from now on) to every
	// connection, through the server's own API.
	Publish(data []byte) error
	// Conns returns how many connections are ready to receive.
	Conns() int
	// Position returns the stream position a client that has seen
	// everything would resume after; ok is false without replay.
	Position() (pos load.Resume, ok bool)
	// Close stops the server and closes its connections.
	Close()
}

// Config is what every server is configured with, so that limits match.
type Config struct {
	MaxConns     int           // connections a server must accept
	History      int           // events kept for replay, where there is replay
	HistoryTTL   time.Duration // how long they are kept, where the server asks
	WriteTimeout time.Duration // bound on one write to a connection
}

// Peer describes a server under test.
type Peer struct {
	Name   string
	Label  string // for tables and charts
	Kind   load.Kind
	Replay bool // clients can reconnect and replay what they missed
	New    func(Config) (Server, error)
}

// All lists the peers in their order in tables.
var All = []Peer{
	{Name: "fanout", Label: "fanout", Kind: load.Fanout, Replay: true, New: newFanout},
	{Name: "fanout-nats", Label: "fanout on NATS JetStream", Kind: load.Fanout, Replay: true, New: newFanoutNATS},
	{Name: "centrifuge", Label: "centrifuge (history, recovery)", Kind: load.Centrifuge, Replay: true,
		New: func(c Config) (Server, error) { return newCentrifuge(c, true) }},
	{Name: "centrifuge-nohist", Label: "centrifuge (no history)", Kind: load.Centrifuge,
		New: func(c Config) (Server, error) { return newCentrifuge(c, false) }},
	{Name: "fanout-redis", Label: "fanout on Redis", Kind: load.Fanout, Replay: true,
		New: func(c Config) (Server, error) { return newFanoutRedis(c, 1) }},
	{Name: "fanout-redis2", Label: "fanout on Redis, published on another node", Kind: load.Fanout, Replay: true,
		New: func(c Config) (Server, error) { return newFanoutRedis(c, 2) }},
	{Name: "centrifuge-redis", Label: "centrifuge on Redis (history, recovery)", Kind: load.Centrifuge, Replay: true,
		New: newCentrifugeRedis},
	{Name: "hub", Label: "gorilla hub", Kind: load.Plain, New: newHub},
	{Name: "raw", Label: "raw floor", Kind: load.Plain, New: newRaw},
}

// Lookup returns the peer called name.
func Lookup(name string) (Peer, error) {
	for _, p := range All {
		if p.Name == name {
			return p, nil
		}
	}
	return Peer{}, fmt.Errorf("unknown peer %q", name)
}

// NewGorillaHub returns one gorilla hub (see hub.go); the many-rooms
// benchmark runs one per room.
func NewGorillaHub(c Config) (Server, error) { return newHub(c) }
