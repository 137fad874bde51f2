package client

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Option configures a Client. Options are applied by Dial, which validates
// the result and returns an error rather than panicking.
type Option func(*config)

type config struct {
	handler        func(Event)
	onReset        func(head uint64, epoch string)
	onSnapshot     func(Snapshot)
	startSet       bool
	startSeq       uint64
	startEpoch     string
	header         http.Header
	httpClient     *http.Client
	minBackoff     time.Duration
	maxBackoff     time.Duration
	timeout        time.Duration
	ackInterval    time.Duration
	readLimit      int64
	maxMessageSize int64
	buffer         int
	maxInFlight    int
	logger         *slog.Logger
	failover       []string
}

func defaultConfig() config {
	return config{
		minBackoff:     100 * time.Millisecond,
		maxBackoff:     10 * time.Second,
		timeout:        10 * time.Second,
		ackInterval:    100 * time.Millisecond,
		readLimit:      16 << 20,
		maxMessageSize: 64 << 10,
		buffer:         1024,
		maxInFlight:    32,
	}
}

func (c *config) validate() error {
	switch {
	case c.minBackoff <= 0 || c.maxBackoff < c.minBackoff:
		return fmt.Errorf("%w: backoff needs 0 < min <= max", ErrInvalidOption)
	case c.timeout <= 0:
		return fmt.Errorf("%w: timeout must be positive", ErrInvalidOption)
	case c.ackInterval <= 0:
		return fmt.Errorf("%w: ack interval must be positive", ErrInvalidOption)
	case c.readLimit <= 0:
		return fmt.Errorf("%w: read limit must be positive", ErrInvalidOption)
	case c.maxMessageSize <= 0:
		return fmt.Errorf("%w: max message size must be positive", ErrInvalidOption)
	case c.buffer <= 0:
		return fmt.Errorf("%w: buffer must be positive", ErrInvalidOption)
	case c.maxInFlight <= 0:
		return fmt.Errorf("%w: max in flight must be positive", ErrInvalidOption)
	case c.startSet && len(c.startEpoch) > 64:
		return fmt.Errorf("%w: epoch longer than 64 bytes", ErrInvalidOption)
	}
	return nil
}

// WithFailover gives the client more servers of the same session (nodes
// sharing one log, such as redislog's) to connect to when the one it uses
// cannot be reached. Dial tries its URL, then these, in order, until one
// welcomes it; afterwards, each failed reconnect attempt moves to the next
// URL, round the list. The client carries its position and its pending
// publishes across: it resumes on the new server after the last event it
// received, and sends the unacked publishes again with their ids. A
// refusal that stops the client (a 4xx other than 408 or 429) stops it
// whichever server sent it. Default: none, only Dial's URL.
func WithFailover(urls ...string) Option {
	return func(c *config) { c.failover = append(c.failover, urls...) }
}

// WithHandler sets the function that receives events. It is called from a
// single goroutine, one event at a time, in seq order; an event counts as
// processed, and so is acked and resumed after, once the handler returns
// (so inside the handler Position returns the event before this one).
// The handler may call Publish: acks are read while it runs.
// Without a handler, events are read from Events.
//
// The handler must not call Close (Close waits for the handler to return);
// start Close in a new goroutine instead.
func WithHandler(f func(Event)) Option {
	return func(c *config) { c.handler = f }
}

// WithOnReset sets the function called when the server says it cannot serve
// the position the client asked to resume from (its epoch is gone, or it fell
// out of the retained history): the events in between are lost to this
// client, so the application must resync, for example from a snapshot, to
// state as of head in epoch, the session's current epoch, which the events
// that follow carry too. Delivery continues with head+1. It runs on the
// handler's goroutine, before the first event after head; while it runs,
// Position still returns the position from before the reset. Default: none
// (the reset is only logged and counted in Stats).
func WithOnReset(f func(head uint64, epoch string)) Option {
	return func(c *config) { c.onReset = f }
}

// WithStartAfter makes the first connection resume after seq of epoch, for
// example a position the application stored with its own state. An empty
// epoch means the server's current one: use it only with a position that came
// from the running server, or with seq 0 to replay all retained history.
// Default: start with the first event after the server's head.
//
// A URL passed to Dial with after and epoch query parameters does the same.
func WithStartAfter(seq uint64, epoch string) Option {
	return func(c *config) {
		c.startSet, c.startSeq, c.startEpoch = true, seq, epoch
	}
}

// WithHeader adds headers to every handshake, for example Authorization or
// Cookie. Default: none.
func WithHeader(h http.Header) Option {
	return func(c *config) { c.header = h.Clone() }
}

// WithHTTPClient sets the HTTP client used for handshakes (its Jar supplies
// cookies, its Transport TLS settings and proxies). Its Timeout, if any,
// bounds each handshake. Default: http.DefaultClient.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.httpClient = hc }
}

// WithBackoff sets the range of delays between reconnect attempts. The delay
// doubles with each failed attempt, from min up to max, and is jittered
// between half and all of that so that many clients dropped together do not
// come back together. Defaults: 100ms and 10s.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) { c.minBackoff, c.maxBackoff = min, max }
}

// WithTimeout sets how long the client waits beyond the server's heartbeat
// interval before it declares a silent server dead and reconnects. It also
// bounds each handshake (up to the welcome) and each write. Default: 10s.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithAckInterval sets the shortest time between two acks on a connection.
// Acks are cumulative, so coalescing loses nothing. Default: 100ms.
func WithAckInterval(d time.Duration) Option {
	return func(c *config) { c.ackInterval = d }
}

// WithReadLimit sets the largest frame the client accepts. The server packs
// many events into one frame when a client is behind, so keep it well above
// the size of one event. Default: 16 MiB.
func WithReadLimit(n int64) Option {
	return func(c *config) { c.readLimit = n }
}

// WithMaxMessageSize sets the largest publish the client sends, and the
// largest frame it writes. It should match the server's maximum message size:
// a larger frame makes the server close the connection with 1009, which stops
// the client. Default: 64 KiB, the server's default.
func WithMaxMessageSize(n int64) Option {
	return func(c *config) { c.maxMessageSize = n }
}

// WithBuffer sets how many received events may wait for the handler (or
// the Events reader). When it is full the client stops taking events from
// the connection, while still reading acks and heartbeats, and resumes after
// the last queued event once the application has worked through half of
// them. Memory is bounded by this and the read limit, never by how far the
// application falls behind. Default: 1024.
func WithBuffer(events int) Option {
	return func(c *config) { c.buffer = events }
}

// WithMaxInFlight sets how many publishes may be sent on a connection and
// not yet answered; further publishes wait, in order, and go out as answers
// come back. This also paces the resend of everything published while the
// client was disconnected. The server refuses publishes beyond its per
// connection burst (default 100) as rate limited, and closes a connection
// that gets more than 100 such refusals within a second (1008, which stops the client). The
// default stays well below both, so that a full window can neither exhaust
// a fresh connection's burst nor come near that many refusals. Raise it
// only together with the server's burst (WithPublishRate). Default: 32.
func WithMaxInFlight(n int) Option {
	return func(c *config) { c.maxInFlight = n }
}

// WithLogger sets where the client logs reconnects, resets and refused
// messages. Default: nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}
