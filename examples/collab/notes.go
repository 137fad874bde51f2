package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/fanout-go/fanout"
)

// maxNotes is how many of the latest notes the server keeps and hands a
// new or reset page, as many as the page shows.
const maxNotes = 1000

// noteEntry is one note of the server's list, as the snapshot carries it:
// the fields of its event.
type noteEntry struct {
	Seq  uint64          `json:"seq"`
	From string          `json:"from,omitempty"`
	ID   string          `json:"id,omitempty"`
	Data json.RawMessage `json:"data"`
}

// notes is the server's state of the session: the latest notes, and the
// seq of the last event they reflect. It is built by following the
// session, and served to pages as the snapshot.
type notes struct {
	started atomic.Bool // one follower only

	mu    sync.Mutex
	seq   uint64
	epoch string
	list  []noteEntry
}

// apply adds committed events to the list.
func (n *notes) apply(evs []fanout.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range evs {
		n.list = append(n.list, noteEntry{Seq: e.Seq, From: e.From, ID: e.ID, Data: e.Data})
		n.seq, n.epoch = e.Seq, e.Epoch
	}
	if over := len(n.list) - maxNotes; over > 0 {
		n.list = append(n.list[:0:0], n.list[over:]...)
	}
	return nil
}

// snapshot is the session's WithSnapshot function: the list as of the
// last event applied.
func (n *notes) snapshot(context.Context) (fanout.Snapshot, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	data, err := json.Marshal(struct {
		Notes []noteEntry `json:"notes"`
	}{Notes: append([]noteEntry{}, n.list...)})
	return fanout.Snapshot{Seq: n.seq, Epoch: n.epoch, Data: data}, err
}

// start reports whether the caller is the first to ask, and so the one
// to follow the session.
func (n *notes) start() bool { return n.started.CompareAndSwap(false, true) }

// follow keeps the list up to date until the session closes. If the list
// ever falls out of the session's history (it would have to be more than
// WithHistory events behind), it starts again from what is retained.
func (n *notes) follow(s *fanout.Session, logger *slog.Logger) {
	for {
		n.mu.Lock()
		epoch, after := n.epoch, n.seq
		n.mu.Unlock()
		err := s.Follow(context.Background(), epoch, after, n.apply)
		if !errors.Is(err, fanout.ErrGone) {
			return // ErrClosed: the session was shut down
		}
		logger.Warn("collab: notes fell behind the history; starting again from what is retained", "err", err)
		st := s.Stats()
		n.mu.Lock()
		n.list, n.epoch, n.seq = nil, st.Epoch, max(st.Oldest, 1)-1
		n.mu.Unlock()
	}
}
