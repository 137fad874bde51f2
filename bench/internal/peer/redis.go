package peer

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/bench/internal/load"
	"github.com/fanout-go/fanout/redislog"
)

// RedisAddr is the Redis the peers on Redis use: the machine's, as
// scripts/services.sh starts it. Keys are under a prefix of the run's own,
// deleted when the server closes.
var RedisAddr = "127.0.0.1:6379"

// redisNode is one node of fanout on Redis: a Redis client, a store and a
// session on its log.
type redisNode struct {
	client rueidis.Client
	store  *redislog.Store
	sess   *fanout.Session
}

func newRedisNode(c Config, prefix string) (*redisNode, error) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{RedisAddr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	st, err := redislog.New(rc, redislog.Options{Prefix: prefix, Window: c.History})
	if err != nil {
		rc.Close()
		return nil, err
	}
	s, err := fanout.NewSession("bench",
		fanout.WithLog(st.Log("bench")),
		fanout.WithPresence(false),
		fanout.WithMaxConnections(c.MaxConns),
		fanout.WithHistory(c.History),
		fanout.WithWriteTimeout(c.WriteTimeout),
	)
	if err != nil {
		st.Close()
		rc.Close()
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Epoch() == "" {
		if time.Now().After(deadline) {
			_ = s.Close()
			st.Close()
			rc.Close()
			return nil, fmt.Errorf("fanout on Redis: session not ready after 10 s (is Redis at %s up?)", RedisAddr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &redisNode{client: rc, store: st, sess: s}, nil
}

func (n *redisNode) close() {
	_ = n.sess.Close()
	n.store.Close()
	n.client.Close()
}

// fanoutRedisServer is fanout with its log on Redis (redislog), configured
// like the fanout peer. With two nodes, clients connect to the first and
// every publish goes through the second, so every event crosses from one
// node to the other through Redis; the second node has no connections.
type fanoutRedisServer struct {
	serve, pub *redisNode
	prefix     string
}

func newFanoutRedis(c Config, nodes int) (Server, error) {
	prefix := fmt.Sprintf("fanbench-%d-%d", os.Getpid(), time.Now().UnixNano())
	a, err := newRedisNode(c, prefix)
	if err != nil {
		return nil, err
	}
	s := &fanoutRedisServer{serve: a, pub: a, prefix: prefix}
	if nodes == 2 {
		b, err := newRedisNode(c, prefix)
		if err != nil {
			a.close()
			return nil, err
		}
		s.pub = b
	}
	return s, nil
}

func (f *fanoutRedisServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.serve.sess.ServeHTTP(w, r)
}

func (f *fanoutRedisServer) Publish(data []byte) error {
	_, err := f.pub.sess.Publish(context.Background(), data)
	return err
}

func (f *fanoutRedisServer) Conns() int { return f.serve.sess.Stats().Connections }

func (f *fanoutRedisServer) Position() (load.Resume, bool) {
	st := f.serve.sess.Stats()
	return load.Resume{Offset: st.Head, Epoch: st.Epoch}, true
}

func (f *fanoutRedisServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if keys, err := f.serve.client.Do(ctx, f.serve.client.B().Keys().Pattern("{"+f.prefix+":*").Build()).AsStrSlice(); err == nil && len(keys) > 0 {
		_ = f.serve.client.Do(ctx, f.serve.client.B().Del().Key(keys...).Build()).Error()
	}
	if f.pub != f.serve {
		f.pub.close()
	}
	f.serve.close()
}

// newCentrifugeRedis is centrifuge with its Redis broker (history in Redis
// streams, recovery on), on the same Redis.
func newCentrifugeRedis(c Config) (Server, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, err
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: RedisAddr})
	if err != nil {
		return nil, err
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{
		Prefix: fmt.Sprintf("fanbench-cf-%d-%d", os.Getpid(), time.Now().UnixNano()),
		Shards: []*centrifuge.RedisShard{shard},
	})
	if err != nil {
		return nil, err
	}
	node.SetBroker(broker)
	return startCentrifuge(node, c, true)
}
