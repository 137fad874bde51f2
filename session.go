package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/fanout-go/fanout/internal/wire"
)

// Session is one ordered stream of events (a document, a room) and the
// http.Handler its clients connect to. Every event gets the next seq of the
// session's single sequence and goes to every connection in that order.
//
// All methods are safe for concurrent use. A Session must be created with
// NewSession; after Shutdown or Close it may not be reused.
type Session struct {
	name   string
	cfg    config
	hub    *Hub       // the Hub that serves the session, or nil
	pacer  *pacer     // the Hub's pacer the session shares, or nil: its own
	ps     pacerState // the shared pacer's bookkeeping
	epoch  string
	born   time.Time
	accept websocket.AcceptOptions

	mu          sync.RWMutex
	window      history                 // the events connections are served from
	shared      Log                     // WithLog; nil: the session is its own log
	ready       bool                    // with shared: the window has the log's epoch
	grown       chan struct{}           // with shared: closed and replaced when the window grows, the epoch changes or the session closes
	head        atomic.Uint64           // window.head, readable without the lock
	connList    atomic.Pointer[[]*Conn] // snapshot of conns, for waking writers
	due         chan struct{}           // cap 1: an event was committed; wakes the pacer
	tail        tail                    // wakes followers (Follow)
	presence    presenceLog             // joins and leaves not yet sent
	presenceDue chan struct{}           // cap 1: presence was noted; the pacer sends it within presenceInterval
	pacerStop   chan struct{}           // closes the running pacer; nil when none runs
	dedup       dedup
	conns       map[*Conn]struct{}
	users       map[string]*userState
	positions   positions // WithResumeByIdentity, in memory
	admitted    int       // connections past admission, registered or not
	left        bool      // a connection ended since a Hub's evictor last looked
	closed      bool

	wg         sync.WaitGroup // admitted connections until their goroutines end, the pacer and the follower
	stopFollow context.CancelFunc

	published  atomic.Uint64
	deduped    atomic.Uint64
	delivered  atomic.Uint64
	slowCloses atomic.Uint64
	resumed    atomic.Uint64
	resets     atomic.Uint64

	observed // WithObserver
}

// userState is what the session tracks per identity while it has
// connections.
type userState struct {
	conns int
	acked atomic.Uint64
}

// NewSession returns a session named name (sent to clients in welcome),
// configured by opts.
func NewSession(name string, opts ...Option) (*Session, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		o(&cfg)
	}
	if err := cfg.validateConfig(); err != nil {
		return nil, err
	}
	return newSession(name, cfg, nil), nil
}

// newSession makes a session from a checked configuration; hub is the Hub
// that serves it, or nil.
func newSession(name string, cfg config, hub *Hub) *Session {
	s := &Session{
		hub:   hub,
		name:  name,
		cfg:   cfg,
		epoch: newEpoch(),
		born:  time.Now(),
		// No compression: events are framed once, by the session (wire.TextFrame).
		accept:      websocket.AcceptOptions{OriginPatterns: cfg.origins, CompressionMode: websocket.CompressionDisabled},
		window:      newHistory(cfg.history),
		due:         make(chan struct{}, 1),
		presenceDue: make(chan struct{}, 1),
		dedup:       newDedup(cfg.dedupWindow),
		conns:       make(map[*Conn]struct{}),
		users:       make(map[string]*userState),
	}
	s.positions.n = cfg.resumeByIdentity
	s.connList.Store(new([]*Conn))
	s.startObserving()
	if cfg.log != nil {
		s.shared, s.epoch = cfg.log, ""
		s.grown = make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		s.stopFollow = cancel
		s.wg.Add(1)
		go s.follow(ctx)
	}
	return s
}

// Name returns the session's name.
func (s *Session) Name() string { return s.name }

// Epoch returns the name of this incarnation of the session's history;
// on a shared log, empty until the session has read the log's epoch.
func (s *Session) Epoch() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.epoch
}

// Publish appends data, which must be JSON in UTF-8, as the next event and returns
// its seq. When it returns nil the event is committed: sequenced, in the
// log, and due to every connection. Data containing raw newlines is
// compacted. It fails with ErrInvalidJSON, ErrTooLarge, ErrClosed, ctx's
// error, or, on a shared log that cannot commit, an error wrapping
// ErrUnavailable (nothing was appended that any client will be told of as
// acked; see WithLog).
func (s *Session) Publish(ctx context.Context, data []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !json.Valid(data) || !utf8.Valid(data) {
		return 0, ErrInvalidJSON
	}
	data = wire.Compact(data)
	if int64(len(data)) > s.cfg.maxMessageSize {
		return 0, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(data), s.cfg.maxMessageSize)
	}
	if s.shared != nil {
		if s.isClosed() {
			return 0, ErrClosed
		}
		a, err := s.appendShared(ctx, "", "", data)
		if err != nil && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return a.Seq, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	seq := s.commitLocked(data, "", "")
	s.mu.Unlock()
	s.wakePacer()
	return seq, nil
}

// publishFrom appends a client publish unless the same identity already
// published id within the dedup window, in which case it returns the
// original seq. It fails with ErrClosed, or ErrUnavailable from a shared
// log.
func (s *Session) publishFrom(ctx context.Context, user, id string, data []byte) (uint64, error) {
	if s.shared != nil {
		if s.isClosed() {
			return 0, ErrClosed
		}
		a, err := s.appendShared(ctx, user, id, data)
		return a.Seq, err
	}
	k := dedupKey{user: user, id: id}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	if seq, dup := s.dedup.lookup(k); dup {
		s.mu.Unlock()
		s.noteDeduplicated()
		return seq, nil
	}
	seq := s.commitLocked(data, user, id)
	s.dedup.remember(k, seq)
	s.mu.Unlock()
	s.wakePacer()
	return seq, nil
}

func (s *Session) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// committed returns the seq of user's publish id if it is in the dedup
// window. On a shared log the log answers retries itself (Log.Append).
func (s *Session) committed(user, id string) (uint64, bool) {
	if s.shared != nil {
		return 0, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dedup.lookup(dedupKey{user: user, id: id})
}

// now is the session's monotonic clock, in nanoseconds since NewSession:
// heartbeats compare these, immune to changes of the wall clock.
func (s *Session) now() int64 { return int64(time.Since(s.born)) + 1 }

// Acked returns the highest seq any connection of user has acknowledged,
// while user has at least one connection.
func (s *Session) Acked(user string) (seq uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[user]
	if !ok {
		return 0, false
	}
	return u.acked.Load(), true
}

// Conns returns a snapshot of the session's open connections.
func (s *Session) Conns() []*Conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}
