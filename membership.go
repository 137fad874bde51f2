package fanout

import "github.com/fanout-go/fanout/internal/wire"

// registerWith attaches c to the session: it decides where c's cursor
// starts (a resume, the snapshot's seq, or the head), queues the welcome
// (and the snapshot after it), and announces c to the others. It returns
// ErrClosed once the session is closed, and an *errSnapshotStale, having
// changed nothing, when c needs snap and the window cannot serve it.
func (s *Session) registerWith(c *Conn, pos resumePos, snap *Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.resumableLocked(pos) {
		snap = nil // a resume needs no snapshot
	} else if snap != nil {
		if err := s.snapshotServableLocked(snap); err != nil {
			return err
		}
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
		if s.resumableLocked(pos) {
			start, w.Resumed = pos.after, true
			w.After, w.ByIdentity = pos.after, pos.byIdentity
			c.acked.Store(pos.after) // it has processed what it resumes from
			s.noteResume(true)
		} else {
			s.noteResume(false)
		}
	}
	if snap != nil { // the snapshot reflects every event up to its seq
		start, w.Snapshot = snap.Seq, true
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
	if snap != nil { // right after the welcome, before every event
		c.ctrl = append(c.ctrl, wire.AppendSnapshot(nil, s.epoch, snap.Seq, snap.Data))
	}
	c.flags.set(flagWork) // the welcome goes first, from the writer
	s.conns[c] = struct{}{}
	list := make([]*Conn, len(old), len(old)+1)
	copy(list, old)
	list = append(list, c)
	s.connList.Store(&list)
	s.startPacerLocked()
	s.noteConnOpened()
	return nil
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
