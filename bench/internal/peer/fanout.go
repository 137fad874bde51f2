package peer

import (
	"context"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/bench/internal/load"
)

// fanoutServer is this library: one session, presence off (a benchmark of
// fan-out, not of join/leave traffic), limits raised to the benchmark's,
// everything else (the 5 ms batch window included) at its default.
type fanoutServer struct {
	*fanout.Session
}

func newFanout(c Config) (Server, error) {
	s, err := fanout.NewSession("bench",
		fanout.WithPresence(false),
		fanout.WithMaxConnections(c.MaxConns),
		fanout.WithHistory(c.History),
		fanout.WithWriteTimeout(c.WriteTimeout),
	)
	if err != nil {
		return nil, err
	}
	return fanoutServer{s}, nil
}

func (f fanoutServer) Publish(data []byte) error {
	_, err := f.Session.Publish(context.Background(), data)
	return err
}

func (f fanoutServer) Conns() int { return f.Stats().Connections }

func (f fanoutServer) Position() (load.Resume, bool) {
	st := f.Stats()
	return load.Resume{Offset: st.Head, Epoch: st.Epoch}, true
}

func (f fanoutServer) Close() { _ = f.Session.Close() }
