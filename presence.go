package fanout

import (
	"time"

	"github.com/fanout-go/fanout/internal/wire"
)

// Presence scales with the rounds, not with the joins. A join or leave is
// not sent to every connection when it happens: it is noted, and the
// session's pacer sends what was noted, at most once per presenceInterval,
// to every connection as one message group. A connection that joins and
// leaves within one interval costs the others nothing. The welcome lists
// at most maxWelcomePresence connections.
//
// Deltas are numbered in the order they are noted. A connection records,
// when it registers, the number of the next delta (Conn.presenceFrom): its
// welcome reflects every delta before it, so it is sent only those from
// there on. A join still unsent when its connection leaves is dropped, and
// the leave goes only to those that saw the connection in their welcome.

const (
	// presenceInterval is the longest a join or leave waits before it is
	// sent, and the shortest time between two presence messages to one
	// connection.
	presenceInterval = 100 * time.Millisecond
	// maxWelcomePresence bounds the welcome's presence list; past it the
	// list holds the connections that joined first, and `present` says how
	// many there are.
	maxWelcomePresence = 256
)

// presenceLog is the session's unsent presence deltas; guarded by s.mu.
type presenceLog struct {
	pending []presenceDelta
	first   uint64 // the number of pending[0]
}

type presenceDelta struct {
	c     *Conn
	join  bool
	gone  bool   // a join whose connection left before it was sent
	after uint64 // if not 0, a leave goes only to connections with presenceFrom >= after
	line  []byte // the encoded message
}

// next is the number the next delta gets.
func (p *presenceLog) next() uint64 { return p.first + uint64(len(p.pending)) }

// noteJoinLocked notes c's join and returns the welcome's presence list
// and the number of connections present, c included. s.mu is held.
func (s *Session) noteJoinLocked(c *Conn, list []*Conn) ([]wire.Member, int) {
	n := min(len(list), maxWelcomePresence-1)
	members := make([]wire.Member, 0, n+1)
	for _, o := range list[:n] {
		members = append(members, wire.Member{User: o.identity.User, Conn: o.id})
	}
	members = append(members, wire.Member{User: c.identity.User, Conn: c.id})
	if len(list) > 0 {
		s.addDeltaLocked(presenceDelta{c: c, join: true, line: wire.AppendPresence(nil, wire.TypeJoin, c.identity.User, c.id)})
	}
	c.presenceFrom = s.presence.next()
	return members, len(list) + 1
}

// noteLeaveLocked notes c's leaving. s.mu is held, and c is no longer in
// the connection list.
func (s *Session) noteLeaveLocked(c *Conn) {
	p := &s.presence
	if len(s.conns) == 0 { // nobody to tell, and nothing owed to anyone
		p.first, p.pending = p.next(), nil
		return
	}
	d := presenceDelta{c: c, line: wire.AppendPresence(nil, wire.TypeLeave, c.identity.User, c.id)}
	for i := len(p.pending) - 1; i >= 0; i-- {
		if j := &p.pending[i]; j.c == c && j.join {
			j.gone = true
			d.after = p.first + uint64(i) + 1
			if !s.knownToAny(d.after) {
				return // nobody saw it: nothing to send
			}
			break
		}
	}
	s.addDeltaLocked(d)
}

// knownToAny reports whether a connection still here has presenceFrom at
// least after: it registered after a join, and saw its connection in its
// welcome.
func (s *Session) knownToAny(after uint64) bool {
	for o := range s.conns {
		if o.presenceFrom >= after {
			return true
		}
	}
	return false
}

func (s *Session) addDeltaLocked(d presenceDelta) {
	p := &s.presence
	if len(p.pending) == 0 {
		if s.pacer != nil {
			s.pacer.notifyPresence(s)
		}
		select {
		case s.presenceDue <- struct{}{}:
		default:
		}
	}
	p.pending = append(p.pending, d)
}

// flushPresence sends the noted deltas to every connection, as one
// control message each. It runs on the pacer.
func (s *Session) flushPresence() {
	s.mu.Lock()
	p := &s.presence
	pending, first := p.pending, p.first
	p.first, p.pending = p.next(), nil
	list := *s.connList.Load()
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	var shared, frame []byte // for connections that registered before every delta
	var bp *[]byte
	for _, o := range list {
		if o.presenceFrom <= first {
			if bp == nil {
				bp = batchPool.Get().(*[]byte)
				shared = presenceBatch(pending, first, first)
				frame = wire.TextFrame(append(append((*bp)[:wire.FrameHeadroom], shared...), '\n'))
			}
			if shared != nil {
				o.offerPresence(frame, shared)
			}
			continue
		}
		if b := presenceBatch(pending, first, o.presenceFrom); b != nil {
			o.queue(b)
		}
	}
	if bp != nil {
		putBatch(bp, *bp)
	}
}

// presenceBatch encodes the deltas news to a connection whose
// presenceFrom is from, one per line, or returns nil if there are none.
func presenceBatch(pending []presenceDelta, first, from uint64) []byte {
	var b []byte
	for i, d := range pending {
		n := first + uint64(i)
		if n < from || d.gone || from < d.after {
			continue
		}
		if b != nil {
			b = append(b, '\n')
		}
		b = append(b, d.line...)
	}
	return b
}
