package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Identity is who a connection belongs to, as the authentication hook decided.
// It is the `from` of that connection's publishes, the key of publish-id
// dedup and of acked positions, and what presence shows.
type Identity struct {
	User string
}

// An Option configures a Session. Options are checked by NewSession, which
// returns an error for an invalid value.
type Option func(*config)

type config struct {
	history          int
	heartbeat        time.Duration
	heartbeatTimeout time.Duration
	writeTimeout     time.Duration
	batchWindow      time.Duration
	maxConns         int
	maxMessageSize   int64
	publishRate      float64
	publishBurst     int
	inboundRate      float64
	inboundBurst     int
	origins          []string
	hosts            []string // nil: any Host
	dedupWindow      int
	presence         bool
	linger           time.Duration // how long an idle writer waits; tests shorten it
	minPart          int           // the fewest connections a write round gives a goroutine of its own; tests lower it
	logger           *slog.Logger
	authenticate     func(*http.Request) (Identity, error)
	validate         func(ctx context.Context, c *Conn, data json.RawMessage) (json.RawMessage, error)
	onJoin, onLeave  func(*Conn)
	log              Log
	observer         Observer
	snapshot         func(ctx context.Context) (Snapshot, error)
	resumeByIdentity int // identities whose positions are remembered; 0: off
}

func defaultConfig() config {
	return config{
		history:          10_000,
		heartbeat:        25 * time.Second,
		heartbeatTimeout: 10 * time.Second,
		writeTimeout:     10 * time.Second,
		batchWindow:      defaultBatchWindow,
		maxConns:         10_000,
		maxMessageSize:   64 << 10,
		publishRate:      50,
		publishBurst:     100,
		inboundRate:      1000,
		inboundBurst:     2000,
		dedupWindow:      10_000,
		presence:         true,
		linger:           defaultLinger,
		minPart:          256,
		logger:           slog.New(slog.DiscardHandler),
	}
}

func (c *config) validateConfig() error {
	switch {
	case c.history < 1:
		return fmt.Errorf("%w: history window must be at least 1, got %d", ErrInvalidOption, c.history)
	case c.heartbeat <= 0 || c.heartbeatTimeout <= 0:
		return fmt.Errorf("%w: heartbeat interval and timeout must be positive", ErrInvalidOption)
	case c.writeTimeout <= 0:
		return fmt.Errorf("%w: write timeout must be positive", ErrInvalidOption)
	case c.batchWindow < 0 || c.batchWindow > time.Second:
		return fmt.Errorf("%w: batch window must be 0-1s, got %v", ErrInvalidOption, c.batchWindow)
	case c.maxConns < 1:
		return fmt.Errorf("%w: max connections must be at least 1, got %d", ErrInvalidOption, c.maxConns)
	case c.maxMessageSize < 256:
		return fmt.Errorf("%w: max message size must be at least 256 bytes, got %d", ErrInvalidOption, c.maxMessageSize)
	case c.publishRate <= 0 || c.publishBurst < 1:
		return fmt.Errorf("%w: publish rate and burst must be positive", ErrInvalidOption)
	case c.dedupWindow < 1:
		return fmt.Errorf("%w: dedup window must be at least 1, got %d", ErrInvalidOption, c.dedupWindow)
	case c.hosts != nil && !validHosts(c.hosts):
		return fmt.Errorf("%w: WithHosts needs at least one host, none empty", ErrInvalidOption)
	case c.logger == nil:
		return fmt.Errorf("%w: nil logger", ErrInvalidOption)
	}
	return validateResumeByIdentity(c.resumeByIdentity)
}

// WithHistory sets how many of the most recent events the session keeps for
// replay. A connection that falls further behind than this is closed as a
// slow consumer (4001), and a resume from further back gets resumed:false.
// The window grows with use, doubling up to this size, so a session holds
// slots only for the events it had (a session without events holds none;
// see the README's "What a session costs"), plus the encoded events
// themselves, up to history × their size. Default 10,000.
func WithHistory(events int) Option { return func(c *config) { c.history = events } }

// WithHeartbeat sets how often the server pings each connection and how long
// it then waits for any message before closing with 4002. Defaults 25 s and
// 10 s.
func WithHeartbeat(interval, timeout time.Duration) Option {
	return func(c *config) { c.heartbeat, c.heartbeatTimeout = interval, timeout }
}

// WithWriteTimeout bounds each blocking write to a connection: a write
// that takes longer than d is cut, the connection recorded as a slow
// consumer (4001) and dropped, since the write may have stopped inside a
// frame; the client sees its connection end and resumes. The pacer's writes
// never block: what a socket does not take at once is finished by a blocking
// write under this bound. It also bounds the close handshake. Default 10 s.
func WithWriteTimeout(d time.Duration) Option { return func(c *config) { c.writeTimeout = d } }

// defaultBatchWindow is WithBatchWindow's default.
const defaultBatchWindow = 5 * time.Millisecond

// WithBatchWindow sets how long events may gather before they are written
// out. The first event after a quiet spell goes out at once; events that
// follow within d of that write round wait for the next one, at most d
// later, and then each connection gets everything pending in one frame. A
// write costs about the same for one event as for twenty, so under a steady
// stream this trades at most d of latency for far fewer writes. With 0 a
// round starts as soon as the previous one is done. At most 1 s. Default
// 5 ms.
func WithBatchWindow(d time.Duration) Option { return func(c *config) { c.batchWindow = d } }

// WithMaxConnections caps the WebSocket connections a session serves at
// once, from admission to close; past it, ServeHTTP answers 503 before
// upgrading. Plain HTTP requests and idle keep-alive connections are not
// counted: the http.Server's timeouts bound those. Default 10,000.
func WithMaxConnections(n int) Option { return func(c *config) { c.maxConns = n } }

// WithMaxMessageSize caps the size of one frame from a client (larger closes
// the connection with 1009) and of one event's data. Default 64 KiB.
func WithMaxMessageSize(bytes int64) Option { return func(c *config) { c.maxMessageSize = bytes } }

// WithPublishRate limits each connection's publishes with a token bucket.
// A publish over the limit is answered with an error rate_limited and not
// appended; a connection refused more than 100 times within a second is
// closed with 1008. Default 50 per second, burst 100.
func WithPublishRate(perSecond float64, burst int) Option {
	return func(c *config) { c.publishRate, c.publishBurst = perSecond, burst }
}

// WithOrigins lists the host patterns (path.Match syntax, as in
// websocket.AcceptOptions.OriginPatterns) whose pages may connect besides the
// same origin. Other origins get 403 before the upgrade, which stops
// cross-site WebSocket hijacking. Default: same origin only. Requests without
// an Origin header (non-browser clients) are always allowed.
func WithOrigins(patterns ...string) Option {
	return func(c *config) { c.origins = append([]string(nil), patterns...) }
}

// WithHosts lists the Host header values the session accepts; a request
// for any other host gets 403 before anything else is looked at. It stops
// DNS rebinding: a page on a domain its owner re-points to your server's
// address (127.0.0.1, a private network) is same-origin with itself, so the
// origin check lets it in, but its requests name the attacker's host. A
// host with a port ("localhost:8080", "[::1]:8080") matches only that
// port; one without ("app.example.com") matches the name on any port.
// Names compare without regard to case. A server that listens on a
// loopback or private address should set it. Default: any host.
func WithHosts(hosts ...string) Option {
	return func(c *config) { c.hosts = append([]string{}, hosts...) }
}

// WithDedupWindow sets how many recent client publishes the session
// remembers by (identity, id), so a retried publish gets its original seq
// back instead of being appended twice. The table grows with use, up to
// this size: a session without client publishes holds none of it. Default
// 10,000.
func WithDedupWindow(ids int) Option { return func(c *config) { c.dedupWindow = ids } }

// WithPresence turns join and leave messages and the welcome's presence list
// on or off. Joins and leaves are gathered and sent at most every 100 ms,
// several in one frame; a connection that joins and leaves within that time
// is not announced, and the welcome lists at most 256 connections (its
// present field counts them all; see PROTOCOL.md). Measured on 2 cores
// (go test -run '^$' -bench 'PresenceJoin|PresenceChurn' -benchtime 1x .):
// 1,000 connections joining one session one after another took 2.9 s with
// presence on and 2.0 s off; with 3,000 readers present while 5,000
// connections joined, read their welcome and reset, each reader was sent
// 20-40 KiB of presence and events. Default on.
func WithPresence(enabled bool) Option { return func(c *config) { c.presence = enabled } }

// WithLogger sets where the session logs connection errors. Default: silent.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithAuthenticate sets the hook that turns a request into an Identity before
// the upgrade. An error refuses the request, and no WebSocket is opened: it
// answers 403 when the error wraps ErrForbidden (authenticated, but not
// allowed in this session), the StatusError's code when it wraps a
// *StatusError with a 4xx code (for example 429 for a user over a quota),
// and 401 otherwise. The error's text is not sent. The Go client stops on
// 401 and 403 and retries 429 with backoff. Default: every request is
// accepted as Identity{User: ""}.
func WithAuthenticate(fn func(*http.Request) (Identity, error)) Option {
	return func(c *config) { c.authenticate = fn }
}

// WithValidate sets the hook every client publish passes before it is
// appended. It may return the data unchanged, transformed (valid JSON), or an
// error: the publisher then gets an error message (code forbidden when the
// error wraps ErrForbidden, invalid otherwise) whose text is err.Error()
// verbatim, so word it for the client, and nothing is appended. It runs on
// the connection's reader goroutine, which reads nothing else meanwhile:
// keep it fast. Default: accept as is.
func WithValidate(fn func(ctx context.Context, c *Conn, data json.RawMessage) (json.RawMessage, error)) Option {
	return func(c *config) { c.validate = fn }
}

// WithOnJoin sets a hook called when a connection has joined: it is
// registered, its starting position is set and its welcome is queued, but
// the welcome may not have been written yet. The connection's reader starts
// once the hook returns.
func WithOnJoin(fn func(*Conn)) Option { return func(c *config) { c.onJoin = fn } }

// WithOnLeave sets a hook called after a connection has closed; Conn.CloseReason
// tells why.
func WithOnLeave(fn func(*Conn)) Option { return func(c *config) { c.onLeave = fn } }

// WithLog has the session commit its events to l, a log that several
// sessions, in this process or in others, may share: each serves the same
// stream, and a client may resume on any of them. Publishes are acked only
// once l committed them; when it cannot within 5 s, Publish returns an error
// wrapping ErrUnavailable and a client publish gets error "unavailable"
// (the client retries it; a retry of an id that was in fact committed gets
// its original seq). The session keeps its own window of the last
// WithHistory events, filled in order from l's tail, and serves connections
// from it. Until it has read l's epoch and head a new connection waits, up to
// 2 s, and is then answered 503 (clients retry). Default: none, the session
// is its own log in memory.
func WithLog(l Log) Option { return func(c *config) { c.log = l } }
