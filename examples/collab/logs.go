package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout/natslog"
	"github.com/fanout-go/fanout/redislog"
)

// openRedisStore returns the documents' logs on the Redis at addr, under
// the key prefix prefix, and a function that closes them.
func openRedisStore(addr, prefix string) (logStore, func(), error) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return nil, nil, err
	}
	store, err := redislog.New(rc, redislog.Options{Prefix: prefix})
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	return store, func() { store.Close(); rc.Close() }, nil
}

// openNATSStore returns the documents' logs on the JetStream of the NATS
// at url, in the stream named stream, and a function that closes the
// connection. The connection reconnects for ever: while NATS is away,
// pages stay connected and publishes fail with "unavailable".
func openNATSStore(ctx context.Context, url, stream string) (logStore, func(), error) {
	nc, err := nats.Connect(url, nats.Name("fanout collab"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := natslog.New(ctx, js, natslog.Options{Stream: stream})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return store, nc.Close, nil
}
