package peer

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/natslog"
)

// natsURL is where the fanout-nats peer finds NATS with JetStream:
// FANBENCH_NATS, or the usual loopback port.
func natsURL() string {
	if u := os.Getenv("FANBENCH_NATS"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// fanoutNATS is fanoutServer on a shared log on NATS JetStream
// (natslog), on a stream of its own that Close deletes: the same session
// and options, every publish committed to JetStream before it is
// delivered, and the node's window filled from the stream's tail.
type fanoutNATS struct {
	fanoutServer
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
}

func newFanoutNATS(c Config) (Server, error) {
	nc, err := nats.Connect(natsURL())
	if err != nil {
		return nil, fmt.Errorf("fanout-nats needs NATS with JetStream at %s (FANBENCH_NATS): %w", natsURL(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	stream := fmt.Sprintf("FANBENCH_%d_%d", os.Getpid(), time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natslog.New(ctx, js, natslog.Options{Stream: stream, Window: c.History})
	if err != nil {
		nc.Close()
		return nil, err
	}
	s, err := fanout.NewSession("bench",
		fanout.WithPresence(false),
		fanout.WithMaxConnections(c.MaxConns),
		fanout.WithHistory(c.History),
		fanout.WithWriteTimeout(c.WriteTimeout),
		fanout.WithLog(st.Log("bench")),
	)
	if err != nil {
		nc.Close()
		return nil, err
	}
	for s.Epoch() == "" { // ready once it has read the log's position
		if ctx.Err() != nil {
			_ = s.Close()
			nc.Close()
			return nil, fmt.Errorf("fanout-nats: the session did not read its log: %w", ctx.Err())
		}
		time.Sleep(time.Millisecond)
	}
	return &fanoutNATS{fanoutServer: fanoutServer{s}, nc: nc, js: js, stream: stream}, nil
}

func (f *fanoutNATS) Close() {
	f.fanoutServer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.js.DeleteStream(ctx, f.stream)
	f.nc.Close()
}
