package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/natslog"
)

// openNATSLog returns the session's log on the JetStream of the NATS at
// url, in the stream named stream, and a function that closes the
// connection. The connection reconnects for ever: while NATS is away,
// pages stay connected and publishes fail with "unavailable".
func openNATSLog(ctx context.Context, url, stream string) (fanout.Log, func(), error) {
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
	return store.Log("collab"), nc.Close, nil
}
