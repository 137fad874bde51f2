package fanout

import (
	"context"
	"fmt"
)

// Resume by identity.
//
// With WithResumeByIdentity the session remembers, for each identity, the
// position its connections had acknowledged when they closed. A client of
// that identity that connects without a position resumes from there, as
// if it had asked to: its welcome says resumed:true and, so that it knows
// where delivery starts, after:<seq>. When the position cannot be served
// any more, it starts like any client without a position (after the head,
// or after a snapshot). The anonymous identity (User "") never resumes by
// identity: it is everyone's.
//
// Positions are remembered when a connection closes. In memory they are
// the session's own, and gone with the process; on a shared log that
// implements PositionStore they are kept by the log's backend, so a client
// resumes on any node, and after a restart of them all. A node that dies
// without closing its connections cannot record their last positions:
// those clients resume from the positions of their previous connections
// (an older position: events are replayed, never skipped) or, with none,
// start like new clients.

// PositionStore is implemented by a Log that keeps identities' acked
// positions in its backend, for WithResumeByIdentity: every session on the
// log then resumes an identity from the position it reached on any of
// them. The log's memory for positions must be bounded, like its dedup
// window.
type PositionStore interface {
	// SavePosition records that user has processed everything up to seq
	// of epoch. For the same epoch the store keeps the highest seq it was
	// given; a position of another epoch replaces it.
	SavePosition(ctx context.Context, user, epoch string, seq uint64) error
	// LoadPosition returns user's recorded position, with ok false when
	// there is none.
	LoadPosition(ctx context.Context, user string) (epoch string, seq uint64, ok bool, err error)
}

// WithResumeByIdentity has a client that connects without a position
// resume from the position its identity had acknowledged when its last
// connection closed; the session remembers the positions of the last n
// identities whose connections closed (on a shared log implementing
// PositionStore, the log keeps them instead, for every node). Use it only
// where an identity is one consumer of the stream (a user whose state
// the host keeps, a device): all connections of an identity share its
// position. Default 0: off, a client without a position starts after the
// head.
func WithResumeByIdentity(n int) Option { return func(c *config) { c.resumeByIdentity = n } }

// positions remembers identities' acked positions, the most recently
// saved n kept. Callers hold the session lock (or the log's).
type positions struct {
	n     int
	m     map[string]savedPosition
	ring  []positionSlot // the identities in the order they were saved
	next  int
	stamp uint64
}

type savedPosition struct {
	epoch string
	seq   uint64
	stamp uint64 // which save of the ring holds it
}

type positionSlot struct {
	user  string
	stamp uint64
}

// save records seq of epoch for user: the higher of it and the one held,
// within an epoch.
func (p *positions) save(user, epoch string, seq uint64) {
	if p.ring == nil { // allocated on first use: an unused session pays nothing
		p.m, p.ring = make(map[string]savedPosition), make([]positionSlot, p.n)
	}
	if old, ok := p.m[user]; ok && old.epoch == epoch {
		seq = max(seq, old.seq)
	}
	if old := p.ring[p.next]; old.user != "" && p.m[old.user].stamp == old.stamp {
		delete(p.m, old.user)
	}
	p.stamp++
	p.ring[p.next] = positionSlot{user: user, stamp: p.stamp}
	p.next = (p.next + 1) % len(p.ring)
	p.m[user] = savedPosition{epoch: epoch, seq: seq, stamp: p.stamp}
}

func (p *positions) load(user string) (string, uint64, bool) {
	sp, ok := p.m[user]
	return sp.epoch, sp.seq, ok
}

// byIdentity returns the position c resumes from: pos when c gave one,
// else its identity's remembered position, if any.
func (s *Session) byIdentity(ctx context.Context, c *Conn, pos resumePos) resumePos {
	user := c.identity.User
	if pos.resume || s.cfg.resumeByIdentity == 0 || user == "" {
		return pos
	}
	var (
		epoch string
		seq   uint64
		ok    bool
	)
	if ps, shared := s.shared.(PositionStore); shared {
		var err error
		if epoch, seq, ok, err = ps.LoadPosition(ctx, user); err != nil {
			s.cfg.logger.Warn("fanout: loading an identity's position", "session", s.name, "user", user, "err", err)
			return pos
		}
	} else {
		s.mu.RLock()
		epoch, seq, ok = s.positions.load(user)
		s.mu.RUnlock()
	}
	if !ok {
		return pos
	}
	return resumePos{resume: true, after: seq, epoch: epoch, byIdentity: true}
}

// rememberPosition records what c's identity acknowledged, once c has
// closed.
func (s *Session) rememberPosition(c *Conn) {
	user, seq := c.identity.User, c.acked.Load()
	if s.cfg.resumeByIdentity == 0 || user == "" || seq == 0 {
		return
	}
	epoch := s.Epoch()
	if ps, shared := s.shared.(PositionStore); shared {
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
		defer cancel()
		if err := ps.SavePosition(ctx, user, epoch, seq); err != nil {
			s.cfg.logger.Warn("fanout: saving an identity's position", "session", s.name, "user", user, "err", err)
		}
		return
	}
	s.mu.Lock()
	s.positions.save(user, epoch, seq)
	s.mu.Unlock()
}

// SavePosition keeps the positions of the last dedupWindow identities
// saved.
func (l *memoryLog) SavePosition(ctx context.Context, user, epoch string, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.positions.n == 0 {
		l.positions.n = l.dedup.window
	}
	l.positions.save(user, epoch, seq)
	return nil
}

func (l *memoryLog) LoadPosition(ctx context.Context, user string) (string, uint64, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	epoch, seq, ok := l.positions.load(user)
	return epoch, seq, ok, nil
}

func validateResumeByIdentity(n int) error {
	if n < 0 {
		return fmt.Errorf("%w: resume by identity needs n >= 0, got %d", ErrInvalidOption, n)
	}
	return nil
}
