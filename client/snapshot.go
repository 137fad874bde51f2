package client

import "encoding/json"

// Snapshot is the server application's state as of one event, which it
// hands a client that starts without a position or whose resume could not
// be served (PROTOCOL.md, "snapshot"). The events delivered after it are
// exactly those after Seq.
type Snapshot struct {
	Seq   uint64          // the last event the state reflects; 0 for the state before any event
	Epoch string          // the epoch Seq belongs to, and the events after it
	Data  json.RawMessage // the state, as the server application encoded it
}

// WithOnSnapshot sets the function that receives the server's snapshots:
// when the server provides them (fanout.WithSnapshot), a client that
// starts without a position, or whose resume the server cannot serve, is
// handed the state as of a seq, and then exactly the events after that
// seq. f runs on the handler's goroutine, before those events, and
// replaces whatever state the application had: it is called in place of
// the WithOnReset function. Once it returns, Position is the snapshot's
// seq and epoch, and a reconnect resumes from there.
//
// Without it, a client ignores snapshots and starts after the server's
// head, as with a server that provides none (the events between the
// snapshot and the head are dropped as already processed). Default: none.
func WithOnSnapshot(f func(Snapshot)) Option {
	return func(c *config) { c.onSnapshot = f }
}
