// Package fanout is reliable event fan-out over WebSockets, embedded in a Go
// web service.
//
// A [Session] is one ordered stream of events (a document, a room) and an
// [http.Handler]: mount it, and its clients get every event in one gap-free
// sequence, acks both ways, replay of what they missed while disconnected,
// heartbeats, bounded memory under slow clients and graceful shutdown.
//
//	s, _ := fanout.NewSession("room-1", fanout.WithAuthenticate(auth))
//	mux.Handle("/ws", s)
//	seq, err := s.Publish(ctx, []byte(`{"text":"hi"}`))
//
// The wire protocol is specified in PROTOCOL.md; package
// github.com/fanout-go/fanout/client is a Go client that follows it, with
// reconnect, resume, dedup and exactly-once publish.
//
// # Guarantees
//
// Order: each event gets the next seq (1, 2, 3, ...) of the session's epoch;
// every connection receives events in that order with no gaps.
//
// No silent loss: a connection is never skipped past an event. A client that
// cannot keep up (it fell out of the history window, or a write blocked past
// the write timeout) is closed with [CloseSlowConsumer]; it reconnects with
// its last seq and either every event after it is replayed or its welcome
// says resumed:false, an explicit reset.
//
// Exactly-once effect: clients drop duplicates by seq after a resume, and a
// client publish retried with the same id within the dedup window gets its
// original seq back instead of being appended twice.
//
// Bounded resources: memory is the history window (events are encoded once
// and shared by all connections, each of which only keeps a cursor), the
// dedup window and small per-connection buffers, whatever the clients do.
// No goroutine outlives [Session.Shutdown] or [Session.Close].
//
// # State: following a session, and snapshots
//
// A host keeps its own state of a session (to persist the events, or to
// build the document they edit) with [Session.Follow], which hands it the
// committed events in order from a position, replayed then live, and says
// so with [ErrGone] when the position is no longer retained. With
// [WithSnapshot] it serves that state, with the seq it reflects, to every
// client that starts without a position or whose resume cannot be served:
// the client gets the snapshot and then exactly the events after its seq,
// so no application resyncs through a side channel.
//
// # How it works
//
// Publish encodes an event once, to the bytes every connection sends, and
// appends it to the session's history window. Each connection keeps only a
// cursor into that window. One goroutine per session, the pacer, sends new
// events in rounds (a [Hub]'s sessions share one pacer per CPU): it lets
// events that follow each other within the batch
// window ([WithBatchWindow]) gather, then goes down the connections and
// writes each one everything after its cursor as one frame of
// newline-separated messages, with one non-blocking system call; the frame
// is made once for all connections at the same position. Each connection
// has a reader goroutine and, only while it has other work (control
// messages, a frame the socket did not take at once, a close), a writer
// goroutine; an idle connection holds just its reader. Whoever writes to a
// socket (the pacer, the connection's writer, or the WebSocket library
// sending a close frame) holds the connection's socket lock, so frames never
// interleave; the pacer only tries the lock and never waits on a socket, so
// a slow client never holds up the others: its writer finishes its frames
// under the write timeout. A resume is a cursor that starts in the past.
//
// By default the history is kept in memory: when the process restarts, the
// epoch changes and resuming clients are told resumed:false. With [WithLog]
// a session commits to a [Log] that several processes share (modules
// github.com/fanout-go/fanout/redislog and .../natslog), and fills its
// window from the log's tail: every node serves the same stream, a client
// resumes on any of them, and a restart keeps the epoch.
//
// # Operating it
//
// [WithObserver] has a session tell an [Observer] what it does; the module
// github.com/fanout-go/fanout/metrics is one that keeps Prometheus metrics.
// [Session.Health] reports whether a session accepts connections and how its
// shared log is doing; package github.com/fanout-go/fanout/health turns it
// into liveness and readiness handlers. examples/collab serves all three.
package fanout
