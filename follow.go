package fanout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fanout-go/fanout/internal/wire"
)

// appendTimeout bounds one append to a shared log: past it the publish
// fails with ErrUnavailable (a client gets an error "unavailable") rather
// than waiting on a backend that does not answer.
const appendTimeout = 5 * time.Second

// A session on a shared log (WithLog) commits publishes to the log and
// fills its own window from the log's tail, in seq order, with one
// goroutine: the follower. Connections are served from the window exactly
// as on a session that is its own log.
//
// Until the follower has read the log's epoch and head the session is not
// ready: new connections get 503 and retry. While the log is unreachable
// connections stay up (heartbeats go on) and publishes fail; the follower
// retries with backoff and carries on from its position, so delivery
// resumes without a gap. When the position is gone from the log (its
// backend lost its data: a new epoch), the window restarts at the log's
// new head and every connection is closed with 1001: clients reconnect,
// and their resume, from the old epoch, is answered resumed:false.

// follow runs the follower until ctx ends.
func (s *Session) follow(ctx context.Context) {
	defer s.wg.Done()
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		err := s.followOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrGone):
			s.cfg.logger.Warn("fanout: position gone from the log: new epoch", "session", s.name)
			s.resync(ctx)
			backoff = 10 * time.Millisecond
			continue
		case err != nil:
			s.noteLogError("follow", err)
			s.cfg.logger.Debug("fanout: following the log", "session", s.name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// followOnce syncs the window if it is not yet, then follows the log's
// tail from the window's head.
func (s *Session) followOnce(ctx context.Context) error {
	s.mu.RLock()
	ready, epoch, head := s.ready, s.epoch, s.window.head
	s.mu.RUnlock()
	if !ready {
		return s.resync(ctx)
	}
	return s.shared.Follow(ctx, epoch, head, func(recs []Record) error {
		return s.receive(epoch, recs)
	})
}

// resync starts the window at the log's current position: the last
// WithHistory events of its epoch. Connections on an earlier epoch are
// closed with 1001.
func (s *Session) resync(ctx context.Context) error {
	epoch, head, err := s.shared.Head(ctx)
	if err != nil {
		return err
	}
	after := head - min(head, uint64(s.cfg.history))
	var recs []Record
	for after+uint64(len(recs)) < head {
		batch, err := s.shared.Read(ctx, epoch, after+uint64(len(recs)), 1024)
		if err != nil { // ErrGone: trimmed meanwhile; the follower starts again
			return err
		}
		if len(batch) == 0 {
			break
		}
		recs = append(recs, batch...)
	}
	s.mu.Lock()
	old := s.epoch
	s.epoch = epoch
	s.window = newHistory(s.cfg.history)
	s.window.head = after
	s.head.Store(after)
	s.ready = true
	s.growLocked()
	var stale []*Conn
	if old != "" && old != epoch {
		for c := range s.conns {
			stale = append(stale, c)
		}
	}
	s.mu.Unlock()
	s.tail.wake() // followers waiting for the log's epoch
	for _, c := range stale {
		c.requestClose(CloseGoingAway, "the log started a new epoch")
	}
	return s.receive(epoch, recs)
}

// receive appends records from the log to the window, in order.
func (s *Session) receive(epoch string, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	s.mu.Lock()
	if s.epoch != epoch {
		s.mu.Unlock()
		return fmt.Errorf("%w: epoch changed while following", ErrGone)
	}
	for _, r := range recs {
		if r.Seq != s.window.head+1 {
			s.mu.Unlock()
			return fmt.Errorf("%w: log gave seq %d after %d", ErrGone, r.Seq, s.window.head)
		}
		b := make([]byte, 0, len(r.Data)+len(r.From)+len(r.ID)+64)
		s.window.append(wire.AppendEvent(b, r.Seq, r.Data, r.From, r.ID))
		s.stamp(r.Seq)
	}
	s.head.Store(s.window.head)
	s.growLocked()
	s.mu.Unlock()
	s.wakePacer()
	return nil
}

// growLocked wakes whoever waits for the window to move (awaitPosition).
// The caller holds s.mu for writing.
func (s *Session) growLocked() {
	if s.grown != nil {
		close(s.grown)
		s.grown = make(chan struct{})
	}
}

// resumeWait bounds how long a resume waits for the window to reach its
// position.
const resumeWait = 2 * time.Second

// awaitPosition waits, on a shared log, for the window to reach a resume
// position beyond its head in its epoch, for up to resumeWait: another
// node may have sent the client events this one has not received from the
// log yet. It reports false when the node should refuse the connection for
// now (503, which clients retry): the position is still beyond the window
// but the log has it, or the log cannot say. A position beyond the log's
// own head is let through, to be answered resumed:false as on one node.
// awaitReady waits, up to resumeWait, for a session on a shared log to
// have read the log's epoch and head, so that the first connection of a
// session just created (by a Hub, say) is served rather than refused. It
// reports whether the session is ready.
func (s *Session) awaitReady(ctx context.Context) bool {
	if s.shared == nil {
		return true
	}
	t := time.NewTimer(resumeWait)
	defer t.Stop()
	for {
		s.mu.RLock()
		ready, closed, grown := s.ready, s.closed, s.grown
		s.mu.RUnlock()
		if ready || closed {
			return ready
		}
		select {
		case <-grown:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
}

func (s *Session) awaitPosition(ctx context.Context, pos resumePos) bool {
	if s.shared == nil || !pos.resume {
		return true
	}
	t := time.NewTimer(resumeWait)
	defer t.Stop()
	for {
		s.mu.RLock()
		done := s.closed || pos.epoch != "" && pos.epoch != s.epoch || pos.after <= s.window.head
		epoch, grown := s.epoch, s.grown
		s.mu.RUnlock()
		if done {
			return true
		}
		select {
		case <-grown:
			continue
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		logEpoch, head, err := s.shared.Head(hctx)
		cancel()
		return err == nil && (logEpoch != epoch || head < pos.after)
	}
}

// appendShared commits one publish to the shared log.
func (s *Session) appendShared(ctx context.Context, from, id string, data []byte) (Appended, error) {
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	a, err := s.shared.Append(ctx, from, id, data)
	switch {
	case err == nil:
		if a.Duplicate {
			s.noteDeduplicated()
		} else {
			s.notePublished(id != "")
		}
		return a, nil
	case errors.Is(err, ErrUnavailable):
		s.noteLogError("append", err)
		return a, err
	default:
		s.noteLogError("append", err)
		return a, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}
