package fanout

import (
	"sync/atomic"
	"time"
)

// Observer is told what sessions do, as it happens: the hook that metrics
// (the module github.com/fanout-go/fanout/metrics, on Prometheus) and any
// other instrumentation are fed from. A session has one when it is created
// with WithObserver; without one, each place that would tell it costs one
// nil check.
//
// Its methods are called on the session's own goroutines (the pacer in
// the middle of a write round, a connection's reader or writer), some with
// the session's lock held: they must be fast, must not block and must not
// call back into the Session or a Conn. They may be called concurrently.
// Every method gets the name of the session (or, for the shared-log
// events a Log implementation reports, of the stream) it is about; an
// observer that labels by it must bound the set of values itself (see the
// metrics module's WithSessionLabel).
//
// Observer may gain methods in later versions: embed BaseObserver in an
// implementation so that it keeps compiling, and override what it wants.
type Observer interface {
	// SessionStarted is called by NewSession, SessionStopped when
	// Shutdown or Close begins, once per session.
	SessionStarted(session string)
	SessionStopped(session string)

	// ConnOpened is called when a connection has registered, ConnClosed
	// when it has left, with the code it closed with (CloseCodeOf its
	// Conn.CloseReason): a client's own close code, CloseAbnormal when it
	// dropped without one.
	ConnOpened(session string)
	ConnClosed(session string, code CloseCode)

	// Published is called for each event this session appended: by
	// Publish (OriginServer) or by a client (OriginClient). On a shared
	// log only the appends made through this session are reported, not
	// those other nodes made.
	Published(session string, origin Origin)
	// Refused is called when a client publish is answered with an error
	// and nothing is appended; code is the error's code, one of
	// "invalid", "forbidden", "rate_limited", "too_large", "unavailable"
	// (PROTOCOL.md).
	Refused(session, code string)
	// Deduplicated is called when a client publish is answered with the
	// seq of an earlier one with the same id, and not appended again.
	Deduplicated(session string)
	// Resumed is called when a connection asked to resume: replayed is
	// true when its events are replayed, false when it is told
	// resumed:false (a reset).
	Resumed(session string, replayed bool)

	// WriteRound is called at the start of each of the pacer's write
	// rounds.
	WriteRound(session string)
	// Wrote is called after each frame written in full to a connection
	// by the session (not the WebSocket library's close frames): events
	// is how many events it carried (0 for control messages alone) and
	// bytes its size on the wire. latency is how long the oldest event
	// in it waited: from its commit (on a shared log, from its arrival on
	// this node) to the end of the write; its other events waited less,
	// so latency is an upper bound for each. It is -1 for a frame without
	// events, and for a replay to a resuming connection of events
	// committed before it connected, whose wait says how long the client
	// was away rather than how fast the session writes.
	Wrote(session string, events, bytes int, latency time.Duration)
	// SlowConsumer is called when a connection is closed as a slow
	// consumer (4001): it fell out of the history window, its control
	// queue filled, or a write timed out.
	SlowConsumer(session string)
	// HeartbeatTimeout is called when a connection that did not answer a
	// heartbeat in time is closed (4002).
	HeartbeatTimeout(session string)

	// HubSessionCreated and HubSessionEvicted are called by a Hub when it
	// creates a session on demand and when it evicts an idle one, on the
	// observer its sessions are given.
	HubSessionCreated(session string)
	HubSessionEvicted(session string)

	// LogError is called when a shared log (WithLog) fails an operation:
	// the session reports the errors its Log returns, with op "append"
	// (a publish) or "follow" (following the tail, reading, the head); a
	// Log implementation may report its backend's errors with op naming
	// one of its own operations, from a small fixed set.
	LogError(stream, op string, err error)
	// LogGapRepaired and LogProbeRestarted are reported by Log
	// implementations, which take an Observer through an option of their
	// own: a gap found in the tail they follow and filled by reading the
	// missing records, and a restart of the probe with which they watch
	// their backend.
	LogGapRepaired(stream string)
	LogProbeRestarted(stream string)
}

// Origin says who published an event.
type Origin uint8

// The origins of events.
const (
	OriginServer Origin = iota // Session.Publish
	OriginClient               // a client's publish message
)

func (o Origin) String() string {
	if o == OriginClient {
		return "client"
	}
	return "server"
}

// BaseObserver implements every method of Observer by doing nothing. Embed
// it in an Observer that overrides only some.
type BaseObserver struct{}

func (BaseObserver) SessionStarted(string)                 {}
func (BaseObserver) SessionStopped(string)                 {}
func (BaseObserver) ConnOpened(string)                     {}
func (BaseObserver) ConnClosed(string, CloseCode)          {}
func (BaseObserver) Published(string, Origin)              {}
func (BaseObserver) Refused(string, string)                {}
func (BaseObserver) Deduplicated(string)                   {}
func (BaseObserver) Resumed(string, bool)                  {}
func (BaseObserver) WriteRound(string)                     {}
func (BaseObserver) Wrote(string, int, int, time.Duration) {}
func (BaseObserver) SlowConsumer(string)                   {}
func (BaseObserver) HeartbeatTimeout(string)               {}
func (BaseObserver) HubSessionCreated(string)              {}
func (BaseObserver) HubSessionEvicted(string)              {}
func (BaseObserver) LogError(string, string, error)        {}
func (BaseObserver) LogGapRepaired(string)                 {}
func (BaseObserver) LogProbeRestarted(string)              {}

// WithObserver has the session tell o what it does (see Observer). With
// an observer, the session also keeps the commit time of each event in
// its history window (8 bytes per slot) for Wrote's latency. Default:
// none.
func WithObserver(o Observer) Option { return func(c *config) { c.observer = o } }

// observed is what a session keeps for its observer; zero without one.
// The note methods below are what the rest of the package calls: each is
// a nil check, small enough to be inlined, in front of the call.
type observed struct {
	obs Observer
	// stamps holds, for each slot of the history window (by seq, as
	// history.at), Session.now when its event was committed. Written
	// under s.mu, read without it by writers, which may find a newer
	// event's time when theirs was overwritten meanwhile.
	stamps []atomic.Int64
}

// startObserving is called by NewSession.
func (s *Session) startObserving() {
	if s.cfg.observer == nil {
		return
	}
	s.obs = s.cfg.observer
	s.stamps = make([]atomic.Int64, s.cfg.history)
	s.obs.SessionStarted(s.name)
}

// stamp records when the event seq entered the window.
func (s *Session) stamp(seq uint64) {
	if s.stamps != nil {
		s.stampNow(seq)
	}
}

func (s *Session) stampNow(seq uint64) {
	s.stamps[(seq-1)%uint64(len(s.stamps))].Store(s.now())
}

// stampFor returns when the event after seq after was committed, for the
// latency of a frame to c that starts with it: 0 without an observer, -1
// when c is being replayed that event (it resumed from before it), whose
// wait says how long the client was away rather than how fast the session
// writes.
func (s *Session) stampFor(c *Conn, after uint64) int64 {
	if s.stamps == nil {
		return 0
	}
	if after < c.joinHead {
		return -1
	}
	return s.stamps[after%uint64(len(s.stamps))].Load()
}

func (s *Session) notePublished(client bool) {
	s.published.Add(1)
	if s.obs != nil {
		s.observePublished(client)
	}
}

func (s *Session) observePublished(client bool) {
	o := OriginServer
	if client {
		o = OriginClient
	}
	s.obs.Published(s.name, o)
}

func (s *Session) noteDeduplicated() {
	s.deduped.Add(1)
	if s.obs != nil {
		s.obs.Deduplicated(s.name)
	}
}

func (s *Session) noteResume(replayed bool) {
	if replayed {
		s.resumed.Add(1)
	} else {
		s.resets.Add(1)
	}
	if s.obs != nil {
		s.obs.Resumed(s.name, replayed)
	}
}

func (s *Session) noteSlowConsumer() {
	s.slowCloses.Add(1)
	if s.obs != nil {
		s.obs.SlowConsumer(s.name)
	}
}

func (s *Session) noteRefused(code string) {
	if s.obs != nil {
		s.obs.Refused(s.name, code)
	}
}

func (s *Session) noteHeartbeatTimeout() {
	if s.obs != nil {
		s.obs.HeartbeatTimeout(s.name)
	}
}

func (s *Session) noteRound() {
	if s.obs != nil {
		s.obs.WriteRound(s.name)
	}
}

func (s *Session) noteConnOpened() {
	if s.obs != nil {
		s.obs.ConnOpened(s.name)
	}
}

func (s *Session) noteConnClosed(c *Conn) {
	if s.obs != nil {
		s.observeClosed(c)
	}
}

func (s *Session) observeClosed(c *Conn) {
	s.obs.ConnClosed(s.name, CloseCodeOf(c.CloseReason()))
}

func (s *Session) noteStopped() {
	if s.obs != nil {
		s.obs.SessionStopped(s.name)
	}
}

func (s *Session) noteLogError(op string, err error) {
	if s.obs != nil {
		s.obs.LogError(s.name, op, err)
	}
}

// noteWrote reports a frame of n events after seq after, bytes long,
// written in full to c; stamp, when not 0, is stampFor its first event as
// taken before the write began (a handed-over frame's).
func (s *Session) noteWrote(c *Conn, n, bytes int, after uint64, stamp int64) {
	if s.obs != nil {
		s.wrote(c, n, bytes, after, stamp)
	}
}

func (s *Session) wrote(c *Conn, n, bytes int, after uint64, stamp int64) {
	latency := time.Duration(-1)
	if n > 0 {
		if stamp == 0 {
			stamp = s.stampFor(c, after)
		}
		if stamp > 0 {
			latency = max(time.Duration(s.now()-stamp), 0)
		}
	}
	s.obs.Wrote(s.name, n, bytes, latency)
}
