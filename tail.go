package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/fanout-go/fanout/internal/wire"
)

// Event is one committed event of a session, as Follow hands it to the
// host.
type Event struct {
	Seq   uint64          // position in the session's sequence, from 1
	Epoch string          // the incarnation of the history Seq belongs to
	Data  json.RawMessage // compact JSON, as committed (after WithValidate)
	From  string          // the publisher's identity for a client publish; "" for Publish
	ID    string          // the client's publish id; "" for Publish
}

// followBatch is the most events one call of a Follow function gets.
const followBatch = 256

// Following a session.
//
// A follower reads the window connections are served from, from its own
// position, as a connection does: it holds one batch at a time and never
// makes anyone wait. Publishers are not slowed down by followers; the
// follower's function paces its own reading (it gets the next batch once
// it returns). A follower that falls further behind than the window is
// told so (ErrGone) rather than buffered for.
//
// On a shared log (WithLog) the window is filled from the log's tail, so
// following the window is following the shared stream, events published
// on other nodes included, in the log's order. A position that is no
// longer in the window but still in the log (a follower that starts at 0
// on a node that just started, or fell behind the window) is read from the
// log, and the follower goes on from the window once it has caught up.

// tail wakes followers waiting for the next event.
type tail struct {
	waiting atomic.Int32 // followers running; wake costs nothing when 0
	mu      sync.Mutex
	ch      chan struct{} // closed on the next wake; nil when nobody waits
}

// wake wakes the followers waiting for an event, an epoch or the close.
func (t *tail) wake() {
	if t.waiting.Load() == 0 {
		return
	}
	t.mu.Lock()
	if t.ch != nil {
		close(t.ch)
		t.ch = nil
	}
	t.mu.Unlock()
}

// next returns a channel that the next wake closes.
func (t *tail) next() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ch == nil {
		t.ch = make(chan struct{})
	}
	return t.ch
}

// Follow calls fn with the session's committed events after seq after of
// epoch (empty: the current epoch), in seq order and without gaps, in
// batches of at most 256: first those still retained, then new ones as
// they are committed. It is how a host keeps its own state of a session
// (to persist it, or to serve it as a snapshot, see WithSnapshot). fn runs
// on the calling goroutine; the events passed to it are its own.
//
// Follow returns when ctx ends (ctx's error), when fn returns an error
// (that error), once the session is closed and every event committed
// before is delivered (ErrClosed), or with an error wrapping ErrGone when
// the position cannot be served: the epoch is not the session's, after is
// beyond the head, or the events after it are no longer retained, which
// includes a follower that fell more than WithHistory events behind while
// fn ran (on a shared log, further behind than the log retains; a position
// past this node's head but within the log's is waited for). The
// events delivered before ErrGone are exact; the host then resyncs its
// state, for example from its own store, and follows again from there.
//
// Followers never slow down publishes or connections: fn paces only its
// own reading, and nothing is buffered for a follower beyond the batch it
// is given. A follower that must see every event sizes WithHistory (or the
// shared log's retention) for the longest pause of fn.
//
// On a shared log (WithLog) Follow follows the stream every node commits
// to; it waits until the session has read the log's head (see WithLog),
// and a position the session's window no longer holds is read from the
// log.
func (s *Session) Follow(ctx context.Context, epoch string, after uint64, fn func([]Event) error) error {
	s.tail.waiting.Add(1)
	defer s.tail.waiting.Add(-1)
	var refs [][]byte
	batch := make([]Event, 0, followBatch)
	checkedAhead := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wake := s.tail.next() // before reading: a commit after the read closes it
		st := s.readTail(epoch, after, refs[:0])
		refs = st.refs
		if st.epoch != "" && epoch == "" {
			epoch = st.epoch // from here on the position is in this epoch
		}
		batch = batch[:0]
		switch {
		case st.err != nil:
			return st.err
		case st.ahead && !checkedAhead:
			// A position from the log (another node's, say) that this
			// node has not received yet: wait for it, if the log has it.
			logEpoch, head, err := s.shared.Head(ctx)
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				return fmt.Errorf("fanout: follow after %d: %w", after, err)
			case logEpoch != epoch || after > head:
				return fmt.Errorf("%w: position %d is beyond the log's head %d", ErrGone, after, head)
			}
			checkedAhead = true
		case st.behind:
			recs, err := s.shared.Read(ctx, epoch, after, followBatch)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("fanout: follow after %d: %w", after, err)
			}
			if len(recs) == 0 { // the log holds less than this node's window
				return fmt.Errorf("%w: the log has nothing after %d", ErrGone, after)
			}
			for _, r := range recs {
				batch = append(batch, Event{Seq: r.Seq, Epoch: epoch, Data: append(json.RawMessage(nil), r.Data...), From: r.From, ID: r.ID})
			}
		default:
			for _, b := range refs {
				e, err := wire.DecodeEvent(b)
				if err != nil { // the session's own encoding: cannot happen
					return fmt.Errorf("fanout: follow: %w", err)
				}
				batch = append(batch, Event{Seq: e.Seq, Epoch: epoch, Data: e.Data, From: e.From, ID: e.ID})
			}
		}
		if len(batch) > 0 {
			if err := fn(batch); err != nil {
				return err
			}
			after = batch[len(batch)-1].Seq
			continue
		}
		if st.closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// tailState is what readTail found.
type tailState struct {
	refs   [][]byte // the encoded events after the position (never modified)
	epoch  string   // the session's epoch
	behind bool     // on a shared log: the position is older than the window
	ahead  bool     // on a shared log: the position is past the window's head
	closed bool     // the session is closed
	err    error    // the position is gone
}

// readTail takes the encoded events after `after`, at most followBatch,
// under the read lock; they are decoded after it is released.
func (s *Session) readTail(epoch string, after uint64, refs [][]byte) tailState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := tailState{refs: refs, epoch: s.epoch, closed: s.closed}
	h := &s.window
	switch {
	case s.shared != nil && !s.ready:
		return st // wait until the session has the log's epoch
	case epoch != "" && epoch != s.epoch:
		st.err = fmt.Errorf("%w: epoch %q is not the session's (%q)", ErrGone, epoch, s.epoch)
	case after > h.head && s.shared != nil:
		st.ahead = true
	case after > h.head:
		st.err = fmt.Errorf("%w: position %d is beyond the head %d", ErrGone, after, h.head)
	case after < h.floor() && s.shared != nil:
		st.behind = true
	case after < h.floor():
		st.err = fmt.Errorf("%w: events after %d are no longer retained (oldest: %d)", ErrGone, after, h.oldest())
	default:
		for seq := after + 1; seq <= h.head && len(st.refs) < followBatch; seq++ {
			st.refs = append(st.refs, h.at(seq).wire)
		}
	}
	return st
}
