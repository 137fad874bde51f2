package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hub serves many sessions, one per name (a document, a room), on one
// route. It is an http.Handler: mounted as
//
//	mux.Handle("/docs/{doc}/ws", hub)
//
// a request to /docs/42/ws joins the session named "42". Sessions are
// created on first use, configured per name (WithSessionOptions), and
// evicted once they have had no connection and no publish for the idle
// time (WithIdleTimeout). Every session of a hub shares its connection
// limit and its pacers: one goroutine per CPU writes the rounds of all the
// sessions, rather than one goroutine and timer per session.
//
// Each session is a Session, with the same guarantees as one served on its
// own: its own sequence, epoch, history, dedup and presence.
//
// All methods are safe for concurrent use. After Shutdown or Close a Hub
// may not be reused.
type Hub struct {
	cfg        hubConfig
	pacers     []*pacer
	next       atomic.Uint32 // picks the pacer of the next session
	conns      atomic.Int64  // connections admitted across sessions
	stopped    chan struct{} // closed by Shutdown and Close: the evictor exits
	evictor    sync.WaitGroup
	stopPacing sync.Once

	mu       sync.Mutex
	sessions map[string]*hubEntry
	closed   bool
	gone     Stats // the counters of evicted sessions
	created  uint64
	evicted  uint64
}

// hubEntry is a session as the hub's evictor sees it.
type hubEntry struct {
	s         *Session
	published uint64    // s.published when last looked at
	idleSince time.Time // when it was last seen busy
}

// hubConfig is what HubOptions set.
type hubConfig struct {
	name         func(*http.Request) string
	sessionOpts  func(name string) []Option
	authenticate func(*http.Request) (Identity, error)
	authorize    func(r *http.Request, id Identity, session string) error
	hosts        []string // nil: any Host
	maxSessions  int
	maxConns     int
	idle         time.Duration
}

// A HubOption configures a Hub. Options are checked by NewHub, which
// returns an error for an invalid value.
type HubOption func(*hubConfig)

// hubLogger is where a hub's own refusals go: nowhere, as a hub has no
// logger of its own (its sessions have theirs).
var hubLogger = slog.New(slog.DiscardHandler)

// WithHubHosts lists the Host header values the hub accepts, as WithHosts
// does for a Session: a request for any other host gets 403 before
// anything else is looked at (DNS rebinding). A session's own WithHosts,
// given through WithSessionOptions, is checked too. Default: any host.
func WithHubHosts(hosts ...string) HubOption {
	return func(c *hubConfig) { c.hosts = append([]string{}, hosts...) }
}

// WithSessionName sets how the hub names the session a request is for.
// A name must be 1-128 bytes of ASCII letters, digits and any of - _ . ~
// : @; a request whose name is not answers 400. Default: the value of the
// matched pattern's only wildcard ({doc} in "/docs/{doc}/ws"); with no
// wildcard or several, give this option.
func WithSessionName(fn func(*http.Request) string) HubOption {
	return func(c *hubConfig) { c.name = fn }
}

// WithSessionOptions sets the options of each session the hub creates,
// from its name: history, limits, hooks. A session's WithAuthenticate is
// not used, since the hub authenticates a request before it knows the
// session (WithHubAuthenticate). Options that NewSession would refuse
// answer 500. Default: the defaults of NewSession.
func WithSessionOptions(fn func(name string) []Option) HubOption {
	return func(c *hubConfig) { c.sessionOpts = fn }
}

// WithHubAuthenticate sets the hook that turns a request into an Identity,
// before the session is looked up or created. Its errors answer as
// WithAuthenticate's do: 403 for ErrForbidden, a StatusError's 4xx code,
// otherwise 401. Default: every request is Identity{User: ""}.
func WithHubAuthenticate(fn func(*http.Request) (Identity, error)) HubOption {
	return func(c *hubConfig) { c.authenticate = fn }
}

// WithAuthorize sets the hook that decides whether identity id may open
// session: it runs after authentication and before the session is created
// or joined, so a refused request creates nothing. An error answers 403,
// or the code of a wrapped *StatusError with a 4xx code (404 for a
// document that does not exist, say); no WebSocket is opened. Default:
// everyone may open every session.
func WithAuthorize(fn func(r *http.Request, id Identity, session string) error) HubOption {
	return func(c *hubConfig) { c.authorize = fn }
}

// WithMaxSessions caps the sessions a hub holds at once; a request or a
// Publish for a new session past it gets 503 or ErrSessionLimit. Default
// 10,000.
func WithMaxSessions(n int) HubOption { return func(c *hubConfig) { c.maxSessions = n } }

// WithHubMaxConnections caps the connections across all of a hub's
// sessions; past it, requests get 503 before the upgrade. Each session's
// own limit (WithMaxConnections) applies as well. Default 10,000.
func WithHubMaxConnections(n int) HubOption { return func(c *hubConfig) { c.maxConns = n } }

// WithIdleTimeout sets how long a session stays without connections and
// without publishes before the hub evicts it. Eviction drops the session's
// in-memory history and dedup window: a client that comes back gets a new
// session, with a new epoch, and a resume is answered resumed:false (the
// client resyncs, as after a server restart). Default 1 minute.
func WithIdleTimeout(d time.Duration) HubOption { return func(c *hubConfig) { c.idle = d } }

// Hub errors.
var (
	// ErrSessionLimit is returned by Hub.Publish when creating the session
	// would exceed WithMaxSessions.
	ErrSessionLimit = errors.New("fanout: hub session limit reached")
	// ErrInvalidName is returned by Hub.Publish for a session name that
	// is empty, longer than 128 bytes or has characters other than ASCII
	// letters, digits and - _ . ~ : @.
	ErrInvalidName = errors.New("fanout: invalid session name")
)

// maxNameLen bounds a session name.
const maxNameLen = 128

// NewHub returns a Hub configured by opts. It starts a goroutine that
// evicts idle sessions; Shutdown or Close stops it.
func NewHub(opts ...HubOption) (*Hub, error) {
	cfg := hubConfig{
		name:        patternName,
		sessionOpts: func(string) []Option { return nil },
		maxSessions: 10_000,
		maxConns:    10_000,
		idle:        time.Minute,
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		o(&cfg)
	}
	switch {
	case cfg.name == nil || cfg.sessionOpts == nil:
		return nil, fmt.Errorf("%w: nil function", ErrInvalidOption)
	case cfg.maxSessions < 1:
		return nil, fmt.Errorf("%w: max sessions must be at least 1, got %d", ErrInvalidOption, cfg.maxSessions)
	case cfg.maxConns < 1:
		return nil, fmt.Errorf("%w: max connections must be at least 1, got %d", ErrInvalidOption, cfg.maxConns)
	case cfg.idle <= 0:
		return nil, fmt.Errorf("%w: idle timeout must be positive, got %v", ErrInvalidOption, cfg.idle)
	case cfg.hosts != nil && !validHosts(cfg.hosts):
		return nil, fmt.Errorf("%w: hosts must be host names or host:port", ErrInvalidOption)
	}
	h := &Hub{
		cfg:      cfg,
		stopped:  make(chan struct{}),
		sessions: make(map[string]*hubEntry),
	}
	h.pacers = make([]*pacer, defaultPacers())
	for i := range h.pacers {
		h.pacers[i] = newPacer()
	}
	h.evictor.Add(1)
	go h.evict()
	return h, nil
}

// ServeHTTP serves a WebSocket for the session the request names. Before
// the upgrade it answers 400 for a bad name or resume position, 401 or 403
// when authentication refuses (see WithHubAuthenticate), 403 (or the
// hook's 4xx) when WithAuthorize refuses, and 503 at the hub's or the
// session's limits or after Shutdown; otherwise as Session.ServeHTTP.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.hosts != nil && !hostAllowed(h.cfg.hosts, r.Host) {
		http.Error(w, "host not allowed", http.StatusForbidden)
		return
	}
	name := h.cfg.name(r)
	if !validName(name) {
		http.Error(w, "invalid session name", http.StatusBadRequest)
		return
	}
	pos, err := parseResume(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, ok := authenticate(w, r, h.cfg.authenticate, hubLogger)
	if !ok {
		return
	}
	if h.cfg.authorize != nil {
		if err := h.cfg.authorize(r, id, name); err != nil {
			code := http.StatusForbidden
			var se *StatusError
			if errors.As(err, &se) && se.Code >= 400 && se.Code <= 499 {
				code = se.Code
			}
			http.Error(w, strings.ToLower(http.StatusText(code)), code)
			return
		}
	}
	// A session evicted between the lookup and the admission refuses it;
	// the next lookup makes a new one.
	for range 3 {
		s, err := h.session(name, true)
		if err != nil {
			code := http.StatusServiceUnavailable
			if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrSessionLimit) {
				code = http.StatusInternalServerError
			}
			http.Error(w, strings.ToLower(http.StatusText(code)), code)
			return
		}
		if s.cfg.hosts != nil && !hostAllowed(s.cfg.hosts, r.Host) {
			http.Error(w, "host not allowed", http.StatusForbidden)
			return
		}
		if !s.awaitReady(r.Context()) { // its shared log does not answer
			http.Error(w, "session unavailable", http.StatusServiceUnavailable)
			return
		}
		if s.admit() {
			s.upgrade(w, r, id, pos)
			return
		}
		if !s.isClosed() {
			break // a limit
		}
	}
	http.Error(w, "session unavailable", http.StatusServiceUnavailable)
}

// Publish appends data as the next event of the session named name, as
// Session.Publish does, creating the session if it does not exist: the
// event is then in its history for clients that resume from before it,
// until the session is evicted. It fails as Session.Publish does, and
// with ErrInvalidName, ErrSessionLimit, or ErrClosed after Shutdown.
func (h *Hub) Publish(ctx context.Context, name string, data []byte) (uint64, error) {
	if !validName(name) {
		return 0, ErrInvalidName
	}
	for {
		s, err := h.session(name, true)
		if err != nil {
			return 0, err
		}
		seq, err := s.Publish(ctx, data)
		if errors.Is(err, ErrClosed) && !h.isClosed() {
			continue // evicted meanwhile
		}
		return seq, err
	}
}

// Open returns the session named name, creating it if it does not exist,
// as a request for it would (WithSessionOptions, the session limit). It
// fails with ErrInvalidName, ErrSessionLimit, ErrClosed after Shutdown, or
// an invalid option's error. Like any session of the hub, it is evicted
// once idle; Open again then makes a new one.
func (h *Hub) Open(name string) (*Session, error) {
	if !validName(name) {
		return nil, ErrInvalidName
	}
	return h.session(name, true)
}

// Session returns the live session named name, if there is one. It may be
// evicted, and then closed, at any time after it was last used.
func (h *Hub) Session(name string) (*Session, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.sessions[name]
	if !ok {
		return nil, false
	}
	return e.s, true
}

// HubStats is a point-in-time view of a hub. Counters count since NewHub,
// evicted sessions included.
type HubStats struct {
	Sessions           int    // live sessions
	Connections        int    // open connections across sessions
	Created            uint64 // sessions created
	Evicted            uint64 // sessions evicted for being idle
	Published          uint64 // events appended, across sessions
	Delivered          uint64 // event messages written to connections
	Deduplicated       uint64 // client publishes answered with an earlier seq
	SlowConsumerCloses uint64 // connections closed with 4001
	ResumesReplayed    uint64 // resumes that were served
	ResumesReset       uint64 // resumes that could not be served
}

// Stats returns the hub's current figures, summed over its sessions.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	st := HubStats{Sessions: len(h.sessions), Created: h.created, Evicted: h.evicted}
	sum := h.gone
	ss := make([]*Session, 0, len(h.sessions))
	for _, e := range h.sessions {
		ss = append(ss, e.s)
	}
	h.mu.Unlock()
	for _, s := range ss {
		addStats(&sum, s.Stats())
	}
	st.Connections = sum.Connections
	st.Published, st.Delivered, st.Deduplicated = sum.Published, sum.Delivered, sum.Deduplicated
	st.SlowConsumerCloses, st.ResumesReplayed, st.ResumesReset = sum.SlowConsumerCloses, sum.ResumesReplayed, sum.ResumesReset
	return st
}

func addStats(sum *Stats, st Stats) {
	sum.Connections += st.Connections
	sum.Published += st.Published
	sum.Delivered += st.Delivered
	sum.Deduplicated += st.Deduplicated
	sum.SlowConsumerCloses += st.SlowConsumerCloses
	sum.ResumesReplayed += st.ResumesReplayed
	sum.ResumesReset += st.ResumesReset
}

// Shutdown stops the hub gracefully: new requests get 503, Publish returns
// ErrClosed, and every session is shut down at once, in parallel, as
// Session.Shutdown does it (every client is sent what is pending and
// closed with 1001). It returns once every connection's goroutines and the
// hub's own have ended; if ctx ends first, the remaining connections are
// dropped and ctx's error is returned. Calling it again is safe.
func (h *Hub) Shutdown(ctx context.Context) error {
	ss := h.stop()
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Go(func() { errs[i] = s.Shutdown(ctx) })
	}
	wg.Wait()
	h.stopPacers()
	if err := errors.Join(errs...); err != nil {
		return ctx.Err()
	}
	return nil
}

// Close stops the hub at once: every connection of every session is
// dropped without a close handshake. It returns once their goroutines and
// the hub's have ended.
func (h *Hub) Close() error {
	ss := h.stop()
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(func() { _ = s.Close() })
	}
	wg.Wait()
	h.stopPacers()
	return nil
}

// stopPacers stops the shared pacers once every session is over; it is
// safe to call more than once.
func (h *Hub) stopPacers() {
	h.stopPacing.Do(func() {
		for _, p := range h.pacers {
			p.close()
		}
	})
}

// stop marks the hub closed, stops the evictor and returns the sessions
// live then. The sessions stay in the map, so Stats still counts them.
func (h *Hub) stop() []*Session {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stopped)
	}
	ss := make([]*Session, 0, len(h.sessions))
	for _, e := range h.sessions {
		ss = append(ss, e.s)
	}
	h.mu.Unlock()
	h.evictor.Wait()
	return ss
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// session returns the session named name, creating it if create is set.
func (h *Hub) session(name string, create bool) (*Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if e, ok := h.sessions[name]; ok {
		return e.s, nil
	}
	if !create {
		return nil, nil
	}
	if len(h.sessions) >= h.cfg.maxSessions {
		return nil, ErrSessionLimit
	}
	cfg := defaultConfig()
	for _, o := range h.cfg.sessionOpts(name) {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		o(&cfg)
	}
	if err := cfg.validateConfig(); err != nil {
		return nil, err
	}
	cfg.authenticate = nil // the hub authenticates
	s := newSession(name, cfg, h)
	s.pacer = h.pacers[h.next.Add(1)%uint32(len(h.pacers))]
	h.sessions[name] = &hubEntry{s: s, idleSince: time.Now()}
	h.created++
	if s.obs != nil {
		s.obs.HubSessionCreated(name)
	}
	return s, nil
}

// admitConn reserves one of the hub's connection slots; releaseConn gives
// it back.
func (h *Hub) admitConn() bool {
	if h.conns.Add(1) > int64(h.cfg.maxConns) {
		h.conns.Add(-1)
		return false
	}
	return true
}

func (h *Hub) releaseConn() { h.conns.Add(-1) }

// evict looks over the sessions a few times per idle time and evicts those
// idle for at least that long.
func (h *Hub) evict() {
	defer h.evictor.Done()
	t := time.NewTicker(max(h.cfg.idle/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-h.stopped:
			return
		case now := <-t.C:
			h.evictIdle(now)
		}
	}
}

// evictIdle evicts the sessions idle since before now minus the idle time.
// A session is closed, under its own lock, only if it has no connection
// admitted: a request that looked it up just before gets a refusal from
// admit and looks again (ServeHTTP), never a half-dead session.
func (h *Hub) evictIdle(now time.Time) {
	var done []*Session
	h.mu.Lock()
	for name, e := range h.sessions {
		s := e.s
		if pub := s.published.Load(); pub != e.published || s.busy() {
			e.published, e.idleSince = pub, now
			continue
		}
		if now.Sub(e.idleSince) < h.cfg.idle || !s.closeIfIdle() {
			continue
		}
		delete(h.sessions, name)
		h.evicted++
		if s.obs != nil {
			s.obs.HubSessionEvicted(name)
		}
		done = append(done, s)
	}
	for _, s := range done {
		addStats(&h.gone, s.Stats())
	}
	h.gone.Connections = 0
	h.mu.Unlock()
	for _, s := range done {
		_ = s.Close() // nothing to wait for: no connection, no pacer
	}
}

// busy reports whether the session has connections, or had one since the
// evictor last asked.
func (s *Session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.admitted > 0 || s.left
	s.left = false
	return b
}

// closeIfIdle closes the session if no connection is admitted, and
// reports whether it did.
func (s *Session) closeIfIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admitted > 0 || s.left {
		return false
	}
	s.closed = true
	return true
}

// patternName is the default session name: the value of the matched
// pattern's only wildcard.
func patternName(r *http.Request) string {
	p, name := r.Pattern, ""
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			break
		}
		w := strings.TrimSuffix(p[i+1:i+j], "...")
		p = p[i+j+1:]
		if w == "$" {
			continue
		}
		if name != "" {
			return "" // several: ambiguous
		}
		name = w
	}
	if name == "" {
		return ""
	}
	return r.PathValue(name)
}

// validName reports whether name may name a session.
func validName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '-', b == '_', b == '.', b == '~', b == ':', b == '@':
		default:
			return false
		}
	}
	return true
}
