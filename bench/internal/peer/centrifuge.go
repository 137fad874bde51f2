package peer

import (
	"context"
	"net/http"
	"time"

	"github.com/centrifugal/centrifuge"

	"github.com/fanout-go/fanout/bench/internal/load"
)

// centrifugeServer is a centrifuge node with its in-memory broker, serving
// the JSON protocol. With history, every publication is kept in the
// channel's history stream and subscriptions have recovery on, which is
// what matches fanout's guarantees; without, it is plain PUB/SUB.
type centrifugeServer struct {
	node    *centrifuge.Node
	ws      http.Handler
	history bool
	opts    []centrifuge.PublishOption
}

func newCentrifuge(c Config, history bool) (Server, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, err
	}
	return startCentrifuge(node, c, history)
}

// startCentrifuge sets node up as the benchmark's server and runs it.
func startCentrifuge(node *centrifuge.Node, c Config, history bool) (Server, error) {
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: "bench"}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{Options: centrifuge.SubscribeOptions{EnableRecovery: history}}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return nil, err
	}
	s := &centrifugeServer{
		node:    node,
		history: history,
		ws: centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
			WriteTimeout: c.WriteTimeout,
		}),
	}
	if history {
		s.opts = []centrifuge.PublishOption{centrifuge.WithHistory(c.History, c.HistoryTTL)}
	}
	return s, nil
}

func (s *centrifugeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.ws.ServeHTTP(w, r) }

func (s *centrifugeServer) Publish(data []byte) error {
	_, err := s.node.Publish(load.Channel, data, s.opts...)
	return err
}

func (s *centrifugeServer) Conns() int { return s.node.Hub().NumSubscribers(load.Channel) }

func (s *centrifugeServer) Position() (load.Resume, bool) {
	if !s.history {
		return load.Resume{}, false
	}
	res, err := s.node.History(load.Channel, centrifuge.WithLimit(0))
	if err != nil {
		return load.Resume{}, false
	}
	return load.Resume{Offset: res.Offset, Epoch: res.Epoch}, true
}

func (s *centrifugeServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.node.Shutdown(ctx)
}
