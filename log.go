package fanout

import (
	"context"
	"errors"
)

// Log is where a session's events are committed: its one sequence, the
// dedup of client publishes, the retained history, and the tail that
// every node serving the session follows. It is the extension point for
// running a session on several server processes: give each process's
// session the same shared Log ([WithLog]), for example one on Redis or NATS
// JetStream, and they serve one stream.
//
// Without WithLog a session is its own log, in memory: events are
// committed straight into the window connections are served from, with
// nothing to follow. [NewMemoryLog] is that log behind this interface, for
// sessions in one process that share a stream, and as the reference
// implementation that package logtest checks.
//
// Each node still keeps its own window of encoded events ([WithHistory]),
// filled in seq order from Follow; connections are served from it exactly
// as without a shared log, so fan-out costs the same on every backend.
//
// Implementations must be safe for concurrent use, by several sessions in
// one process and by several processes over one backend.
type Log interface {
	// Append commits data as the event after the log's head and returns
	// its position once it is committed. from and id name a client
	// publish (both empty for a server publish): if the log has already
	// committed from's id within its dedup window, it appends nothing and
	// returns the position that publish got, with Duplicate set. When the
	// backend cannot commit, the error wraps ErrUnavailable; a caller may
	// retry with the same from and id.
	Append(ctx context.Context, from, id string, data []byte) (Appended, error)

	// Head returns the log's epoch and the seq of its newest event, 0
	// before the first.
	Head(ctx context.Context) (epoch string, head uint64, err error)

	// Read returns up to limit records after seq after, in seq order. It
	// fails with ErrGone when epoch is not the log's epoch or records
	// after `after` are no longer retained. It may return fewer than
	// limit, and none when after is the head.
	Read(ctx context.Context, epoch string, after uint64, limit int) ([]Record, error)

	// Follow calls fn with the records after seq after, in seq order and
	// without gaps, in batches, as they are committed, until ctx ends
	// (returning ctx's error) or fn returns an error (returning it). It
	// fails with ErrGone when the position is not, or stops being, in the
	// log: the epoch changed or the records were trimmed. Other errors are
	// the backend's; the caller follows again from its position.
	Follow(ctx context.Context, epoch string, after uint64, fn func([]Record) error) error
}

// Record is one committed event as a log holds it.
type Record struct {
	Seq  uint64
	From string // the identity of a client publish; empty for the server
	ID   string // the client's publish id; empty for the server
	Data []byte // compact JSON
}

// Appended is where Log.Append put an event.
type Appended struct {
	Epoch     string
	Seq       uint64
	Duplicate bool // the publish id was already committed at Seq
}

var (
	// ErrGone is returned by a Log when a position is no longer in it: its
	// epoch changed, or the events after it were trimmed.
	ErrGone = errors.New("fanout: position no longer in the log")
	// ErrUnavailable is returned by Publish, and wrapped by a Log's errors,
	// when the log cannot commit: its backend is unreachable or too slow.
	// Nothing was acked; a retry with the same publish id is safe.
	ErrUnavailable = errors.New("fanout: log unavailable")
)
