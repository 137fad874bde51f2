package fanout

import "github.com/fanout-go/fanout/internal/wire"

// register attaches c to the session: it decides where c's cursor starts
// (a resume, or the head), queues the welcome, and announces c to the
// others. It returns false once the session is closed.
func (s *Session) register(c *Conn, pos resumePos) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	h := &s.window
	w := wire.Welcome{
		Session:     s.name,
		Epoch:       s.epoch,
		Head:        h.head,
		Oldest:      h.oldest(),
		Conn:        c.id,
		User:        c.identity.User,
		HeartbeatMS: s.cfg.heartbeat.Milliseconds(),
	}
	start := h.head
	if pos.resume {
		if (pos.epoch == "" || pos.epoch == s.epoch) && h.canServe(pos.after) {
			start, w.Resumed = pos.after, true
			c.acked.Store(pos.after) // it has processed what it resumes from
			s.noteResume(true)
		} else {
			s.noteResume(false)
		}
	}
	c.sent.Store(start)
	c.joinHead = h.head

	u := s.users[c.identity.User]
	if u == nil {
		u = &userState{}
		s.users[c.identity.User] = u
	}
	u.conns++
	storeMax(&u.acked, c.acked.Load())
	c.user = u

	old := *s.connList.Load()
	if s.cfg.presence {
		w.Presence, w.Present = s.noteJoinLocked(c, old)
	}
	c.ctrl = append(c.ctrl, wire.AppendWelcome(nil, &w))
	c.flags.set(flagWork) // the welcome goes first, from the writer
	s.conns[c] = struct{}{}
	list := make([]*Conn, len(old), len(old)+1)
	copy(list, old)
	list = append(list, c)
	s.connList.Store(&list)
	s.startPacerLocked()
	s.noteConnOpened()
	return true
}

// The connection list the pacer goes down, without the lock, is replaced
// (never changed in place) on every join and leave, under s.mu. It keeps
// the order in which connections joined: written in that order, round
// after round, sockets are visited in about the order the kernel made
// them, which at 10,000 connections measurably beats a random order.

// unregister detaches c and announces its leaving (see noteLeaveLocked).
func (s *Session) unregister(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	old := *s.connList.Load()
	list := make([]*Conn, 0, max(len(old)-1, 0))
	for _, o := range old {
		if o != c {
			list = append(list, o)
		}
	}
	s.connList.Store(&list)
	if len(s.conns) == 0 {
		s.stopPacerLocked()
	}
	if u := s.users[c.identity.User]; u != nil {
		if u.conns--; u.conns == 0 {
			delete(s.users, c.identity.User)
		}
	}
	if s.cfg.presence {
		s.noteLeaveLocked(c)
	}
}
