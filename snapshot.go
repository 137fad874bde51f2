package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/fanout-go/fanout/internal/wire"
)

// Snapshot is the host's state of a session as of one event: what a client
// that starts without a position, or whose position is gone, is handed
// before the events after it (see WithSnapshot).
type Snapshot struct {
	Seq   uint64          // the last event the state reflects; 0 for the state before any event
	Epoch string          // the epoch Seq belongs to; empty: the session's current epoch
	Data  json.RawMessage // the state, any JSON
}

// WithSnapshot sets the function that provides the host's state, with the
// seq it reflects, to the clients that need it: a client that connects
// without a position, or whose resume cannot be served (resumed:false),
// gets its welcome, then a snapshot message with the state, then exactly
// the events after the snapshot's seq. Nothing between the snapshot and
// the live stream is lost or repeated, however publishes race the connect
// (PROTOCOL.md, "snapshot").
//
// fn is host code and may be slow: it is called before the connection
// joins, without any lock of the session held, so publishes and other
// connections go on meanwhile. The connection's starting point is then
// decided, under the same lock as its welcome, at the snapshot's seq,
// which must still be in the window (no older than WithHistory events
// behind the head; on a shared log, a seq this node has not received yet
// is waited for). When it is not, fn is called again, up to 3 times in
// all; if no snapshot fits, or fn fails or panics, or its data is not JSON,
// the connection is closed with 1011 (the client reconnects with backoff)
// and the error is logged. A host that builds its state with Follow keeps
// it within the window by following from the start.
//
// fn gets a context that ends after the write timeout (WithWriteTimeout);
// Shutdown waits for the calls in progress, so that bounds it too.
// It is called once per connection that needs a snapshot, so many clients
// reconnecting at once call it as often: return state kept up to date
// (by Follow, say) rather than computing it from scratch. The snapshot is
// one message, sent whole: keep it within the clients' read limit (the Go
// client's default is 16 MiB). Default: none; such clients start after
// the head, and after a refused resume they must resync on their own.
func WithSnapshot(fn func(ctx context.Context) (Snapshot, error)) Option {
	return func(c *config) { c.snapshot = fn }
}

// snapshotAttempts bounds how often one connection asks for a snapshot the
// window can serve.
const snapshotAttempts = 3

// errSnapshotStale is registerWith's answer to a snapshot the window
// cannot serve.
type errSnapshotStale struct {
	seq, floor, head uint64
	epoch            bool // the snapshot is of another epoch
}

func (e *errSnapshotStale) Error() string {
	if e.epoch {
		return "fanout: snapshot is of another epoch"
	}
	return fmt.Sprintf("fanout: snapshot at seq %d is outside the window (%d, %d]", e.seq, e.floor, e.head)
}

// join registers c, first taking a snapshot when c needs one (see
// WithSnapshot). It returns ErrClosed once the session is closed, or why
// no snapshot could be served.
func (s *Session) join(c *Conn, pos resumePos) error {
	if s.cfg.snapshot == nil && s.cfg.resumeByIdentity == 0 {
		return s.registerWith(c, pos, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.writeTimeout)
	defer cancel()
	pos = s.byIdentity(ctx, c, pos)
	if s.cfg.snapshot == nil {
		return s.registerWith(c, pos, nil)
	}
	for attempt := 1; ; attempt++ {
		var snap *Snapshot
		if !s.resumable(pos) {
			sn, err := s.takeSnapshot(ctx)
			if err != nil {
				return err
			}
			snap = &sn
		}
		err := s.registerWith(c, pos, snap)
		var stale *errSnapshotStale
		if !errors.As(err, &stale) || attempt == snapshotAttempts {
			return err
		}
		if stale.seq > stale.head && !stale.epoch && s.shared != nil { // not received from the log yet
			if err := s.waitHead(ctx, stale.seq); err != nil {
				return err
			}
		}
	}
}

// resumable reports whether pos is a resume the window serves now; the
// decision that counts is made again by registerWith.
func (s *Session) resumable(pos resumePos) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.resumableLocked(pos)
}

func (s *Session) resumableLocked(pos resumePos) bool {
	return pos.resume && (pos.epoch == "" || pos.epoch == s.epoch) && s.window.canServe(pos.after)
}

// snapshotServableLocked reports why the window cannot start a
// connection at snap, or nil when it can.
func (s *Session) snapshotServableLocked(snap *Snapshot) error {
	h := &s.window
	if snap.Epoch != "" && snap.Epoch != s.epoch {
		return &errSnapshotStale{epoch: true}
	}
	if !h.canServe(snap.Seq) {
		return &errSnapshotStale{seq: snap.Seq, floor: h.floor(), head: h.head}
	}
	return nil
}

// takeSnapshot calls the host's snapshot function and checks its data.
func (s *Session) takeSnapshot(ctx context.Context) (snap Snapshot, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fanout: snapshot function panicked: %v", p)
		}
	}()
	snap, err = s.cfg.snapshot(ctx)
	switch {
	case err != nil:
		return snap, fmt.Errorf("fanout: snapshot: %w", err)
	case !json.Valid(snap.Data) || !utf8.Valid(snap.Data):
		return snap, errors.New("fanout: snapshot data is not valid JSON")
	}
	snap.Data = wire.Compact(snap.Data)
	return snap, nil
}

// waitHead waits until the window's head reaches seq, or ctx ends.
func (s *Session) waitHead(ctx context.Context, seq uint64) error {
	s.tail.waiting.Add(1)
	defer s.tail.waiting.Add(-1)
	for {
		wake := s.tail.next()
		if s.head.Load() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fanout: waiting for seq %d of a snapshot: %w", seq, ctx.Err())
		case <-wake:
		case <-time.After(100 * time.Millisecond): // the session may have closed
			if s.isClosed() {
				return ErrClosed
			}
		}
	}
}
