// Package client is a Go client for fanout sessions: it receives a session's
// events exactly once and in order, and publishes events exactly once,
// across dropped connections. It speaks the wire protocol described in
// PROTOCOL.md at the module root.
//
// # Connecting
//
// Dial connects and returns once the server has welcomed the client, so a
// refused handshake (401, 403, 503, ...) is Dial's error, a *HandshakeError.
// From then on the client runs in the background until Close: it delivers
// events to the WithHandler function, or on the Events channel, one at a time
// in seq order, acks them, and answers the server's heartbeats. Reading the
// connection does not wait for the application: acks and heartbeats are
// handled while a handler runs, so a handler may Publish. Events wait in a
// bounded buffer (WithBuffer); when it is full the client takes no more
// events from that connection and, once the application has caught up,
// reconnects and resumes where the buffer ended.
//
// # Reconnecting and resuming
//
// When the connection drops, the server goes away (1001), drops the client as
// a slow consumer (4001) or for a missed heartbeat (4002), or goes silent for
// longer than its heartbeat interval plus WithTimeout, the client reconnects
// with jittered exponential backoff (WithBackoff). It asks the server to
// resume after the last event it received, in the epoch it was welcomed
// with (events still in the buffer are kept and delivered). The server
// replays everything after that point; the client drops any event it already
// has (seq at or below that position) and treats a skipped seq as a broken
// connection. If the server can no longer serve the
// position (a new epoch, or the position fell out of the retained history),
// it says so, and the client calls the WithOnReset function with the current
// head and epoch before delivering the events after it: the application must resync,
// for example from a snapshot. Events are never silently lost.
//
// A server that provides snapshots (fanout.WithSnapshot) sends one in place
// of that reset, and to a client that starts without a position: the
// client hands it to the WithOnSnapshot function, then delivers the events
// after its seq. A server that resumes by identity
// (fanout.WithResumeByIdentity) may resume a client that starts without a
// position from its identity's last acked position: the client starts
// there, and Position says so.
//
// An event counts as processed when the handler returns, or when it has been
// received from the Events channel. That is the position Position reports
// and the client acks (cumulatively, at most once per WithAckInterval). An
// application that stores Event.Seq and Event.Epoch with its own state (or
// the head and epoch of a reset) can start a later client there with
// WithStartAfter.
//
// The client stops for good, and Err says why, after Close, when the server
// closes with 1000 (normal), 1002 (WebSocket protocol error), 1007 (invalid
// UTF-8), 1008 (abuse), 1009 (message too big) or 4000 (protocol error),
// or when a reconnect is refused with an HTTP status other than 5xx, 408 or
// 429. After such an error the events already received are
// still delivered; then Done is closed, and by then every goroutine of the
// client has exited. A close from the server is in Err as the server's own
// *fanout.CloseError: fanout.CloseCodeOf(client.Err()) is the code, as on
// the server, and the CloseError's Reason the text the server sent.
//
// # Exactly-once publishing
//
// Publish gives each publish a random id and waits for the server's ack,
// which carries the seq the event got. If the connection drops before the
// ack, the client sends the same publish, with the same id, again after it
// reconnects, in the original order; the server recognizes the id and acks
// it with the original seq instead of appending it twice. Together with
// dedup by seq on the receiving side, every publish takes effect once and
// every client sees it once.
//
// The server limits each connection's publish rate, and closes a
// connection that gets more than 100 rate_limited refusals within a second (1008, which stops
// the client). So at most WithMaxInFlight publishes are in flight (sent, not
// yet answered) on a connection; the others wait in order and go out as
// answers come back, and so do the publishes resent after a reconnect: a
// backlog, however large, never reaches the server as one burst. A publish
// refused as rate limited was not appended: it stays pending, with its id,
// and is sent again after a pause that starts near 100 ms and grows to about
// 2 s while refusals go on. Meanwhile the window shrinks to one publish and
// grows back with each one the server takes. Publish waits through all of
// that. A publish refused for good (invalid, forbidden,
// too large) fails with a *PublishError and is not retried.
package client
