package fanout

import (
	"context"
	"fmt"
	"sync"
)

// memoryLog is a Log in this process's memory.
type memoryLog struct {
	mu      sync.Mutex
	epoch   string
	recs    []Record // ring: record seq s at (s-1) % len
	head    uint64
	dedup   dedup
	changed chan struct{} // closed and replaced on every append

	positions positions // identities' acked positions (PositionStore)
}

// NewMemoryLog returns a Log kept in this process's memory that retains
// the last window events and remembers the last dedup client publish ids.
// Sessions in one process given the same memory log serve one stream; its
// epoch lasts as long as the value.
func NewMemoryLog(window, dedupWindow int) (Log, error) {
	if window < 1 || dedupWindow < 1 {
		return nil, fmt.Errorf("%w: memory log window and dedup window must be at least 1", ErrInvalidOption)
	}
	return &memoryLog{
		epoch:   newEpoch(),
		recs:    make([]Record, window),
		dedup:   newDedup(dedupWindow),
		changed: make(chan struct{}),
	}, nil
}

func (l *memoryLog) floor() uint64 {
	if n := uint64(len(l.recs)); l.head > n {
		return l.head - n
	}
	return 0
}

func (l *memoryLog) Append(ctx context.Context, from, id string, data []byte) (Appended, error) {
	if err := ctx.Err(); err != nil {
		return Appended{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := dedupKey{user: from, id: id}
	if id != "" {
		if seq, ok := l.dedup.lookup(k); ok {
			return Appended{Epoch: l.epoch, Seq: seq, Duplicate: true}, nil
		}
	}
	l.head++
	l.recs[(l.head-1)%uint64(len(l.recs))] = Record{Seq: l.head, From: from, ID: id, Data: append([]byte(nil), data...)}
	if id != "" {
		l.dedup.remember(k, l.head)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return Appended{Epoch: l.epoch, Seq: l.head}, nil
}

func (l *memoryLog) Head(ctx context.Context) (string, uint64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, l.head, nil
}

func (l *memoryLog) Read(ctx context.Context, epoch string, after uint64, limit int) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, _, err := l.readLocked(epoch, after, limit)
	return recs, err
}

// readLocked returns up to limit records after `after`, and the channel
// that is closed on the next append.
func (l *memoryLog) readLocked(epoch string, after uint64, limit int) ([]Record, <-chan struct{}, error) {
	if epoch != l.epoch || after < l.floor() || after > l.head {
		return nil, nil, ErrGone
	}
	n := min(l.head-after, uint64(max(limit, 0)))
	out := make([]Record, 0, n)
	for s := after + 1; s <= after+n; s++ {
		out = append(out, l.recs[(s-1)%uint64(len(l.recs))])
	}
	return out, l.changed, nil
}

func (l *memoryLog) Follow(ctx context.Context, epoch string, after uint64, fn func([]Record) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		recs, changed, err := l.readLocked(epoch, after, 256)
		l.mu.Unlock()
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			if err := fn(recs); err != nil {
				return err
			}
			after = recs[len(recs)-1].Seq
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
