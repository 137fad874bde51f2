package redislog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout"
)

// redisLog is one session's log, as one node sees it.
type redisLog struct {
	s       *Store
	keys    []string // meta, stream, dedup
	channel string

	mu    sync.Mutex
	epoch string // the newest epoch this node has seen
	seen  uint64 // the highest seq it has seen in it
}

// known returns the epoch and seq the scripts compare the log's head
// with, to find a head that went backwards.
func (l *redisLog) known() (string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, strconv.FormatUint(l.seen, 10)
}

// observe records that the log had reached seq in epoch.
func (l *redisLog) observe(epoch string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if epoch != l.epoch {
		l.epoch, l.seen = epoch, seq
	} else if seq > l.seen {
		l.seen = seq
	}
}

// unavailable wraps a failed call's error.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", fanout.ErrUnavailable, err)
}

func (l *redisLog) args(extra ...string) []string {
	epoch, seen := l.known()
	return append([]string{l.s.node, epoch, seen}, extra...)
}

func (l *redisLog) Append(ctx context.Context, from, id string, data []byte) (fanout.Appended, error) {
	if err := ctx.Err(); err != nil {
		return fanout.Appended{}, err
	}
	res, err := appendScript.Exec(ctx, l.s.client, l.keys, l.args(from, id, rueidis.BinaryString(data),
		l.s.window, l.s.dedup, l.channel, l.s.ttl)).ToArray()
	if err != nil {
		return fanout.Appended{}, unavailable(err)
	}
	if len(res) != 3 {
		return fanout.Appended{}, unavailable(fmt.Errorf("redislog: append returned %d values", len(res)))
	}
	epoch, err1 := res[0].ToString()
	seq, err2 := res[1].AsUint64()
	dup, err3 := res[2].AsInt64()
	if err := errors.Join(err1, err2, err3); err != nil {
		return fanout.Appended{}, unavailable(err)
	}
	if dup == 0 {
		l.observe(epoch, seq)
	}
	return fanout.Appended{Epoch: epoch, Seq: seq, Duplicate: dup == 1}, nil
}

func (l *redisLog) Head(ctx context.Context) (string, uint64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	res, err := headScript.Exec(ctx, l.s.client, l.keys, l.args()).ToArray()
	if err != nil {
		return "", 0, unavailable(err)
	}
	if len(res) != 2 {
		return "", 0, unavailable(fmt.Errorf("redislog: head returned %d values", len(res)))
	}
	epoch, err1 := res[0].ToString()
	seq, err2 := res[1].AsUint64()
	if err := errors.Join(err1, err2); err != nil {
		return "", 0, unavailable(err)
	}
	l.observe(epoch, seq)
	return epoch, seq, nil
}

func (l *redisLog) Read(ctx context.Context, epoch string, after uint64, limit int) ([]fanout.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res, err := readScript.Exec(ctx, l.s.client, l.keys, l.args(epoch, strconv.FormatUint(after, 10),
		strconv.Itoa(max(limit, 1)), l.s.window)).ToArray()
	if err != nil {
		return nil, unavailable(err)
	}
	if len(res) != 4 {
		return nil, unavailable(fmt.Errorf("redislog: read returned %d values", len(res)))
	}
	cur, err1 := res[0].ToString()
	head, err2 := res[1].AsUint64()
	gone, err3 := res[2].AsInt64()
	entries, err4 := res[3].ToArray()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, unavailable(err)
	}
	l.observe(cur, head)
	if gone == 1 {
		return nil, fanout.ErrGone
	}
	if limit < 1 {
		return nil, nil
	}
	recs := make([]fanout.Record, 0, len(entries))
	for i, e := range entries {
		r, err := parseEntry(e)
		if err != nil {
			return nil, unavailable(err)
		}
		if r.Seq != after+uint64(i)+1 {
			// Trimmed between the check and XRANGE: cannot happen in one
			// script, but a stream edited by hand could.
			return nil, fanout.ErrGone
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// parseEntry decodes one XRANGE entry: [id, [f, from, i, id, d, data]].
func parseEntry(e rueidis.RedisMessage) (fanout.Record, error) {
	parts, err := e.ToArray()
	if err != nil || len(parts) != 2 {
		return fanout.Record{}, fmt.Errorf("redislog: malformed stream entry: %v", err)
	}
	id, err := parts[0].ToString()
	if err != nil {
		return fanout.Record{}, err
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
	if err != nil {
		return fanout.Record{}, fmt.Errorf("redislog: stream entry id %q: %w", id, err)
	}
	fields, err := parts[1].AsStrSlice()
	if err != nil {
		return fanout.Record{}, err
	}
	r := fanout.Record{Seq: seq}
	for i := 0; i+1 < len(fields); i += 2 {
		switch fields[i] {
		case "f":
			r.From = fields[i+1]
		case "i":
			r.ID = fields[i+1]
		case "d":
			r.Data = []byte(fields[i+1])
		}
	}
	return r, nil
}

// message is one event as pub/sub carries it.
type message struct {
	epoch string
	rec   fanout.Record
}

// parseMessage decodes "<seq> <epoch> <len(from)> <len(id)> <from><id><data>".
func parseMessage(s string) (message, bool) {
	var head [4]string
	for i := range head {
		j := strings.IndexByte(s, ' ')
		if j < 0 {
			return message{}, false
		}
		head[i], s = s[:j], s[j+1:]
	}
	seq, err1 := strconv.ParseUint(head[0], 10, 64)
	nf, err2 := strconv.Atoi(head[2])
	ni, err3 := strconv.Atoi(head[3])
	if errors.Join(err1, err2, err3) != nil || nf < 0 || ni < 0 || nf+ni > len(s) {
		return message{}, false
	}
	return message{epoch: head[1], rec: fanout.Record{
		Seq:  seq,
		From: s[:nf],
		ID:   s[nf : nf+ni],
		Data: []byte(s[nf+ni:]),
	}}, true
}

// follower is one Follow's mailbox: pub/sub's dispatch fills it, Follow
// empties it.
type follower struct {
	mu     sync.Mutex
	q      []message
	resync bool // read from the stream before trusting q
	closed bool // the store closed
	wake   chan struct{}
}

func newFollower() *follower { return &follower{wake: make(chan struct{}, 1)} }

func (f *follower) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// push queues m; past maxQueue it drops the queue and asks for a read.
func (f *follower) push(m message) {
	f.mu.Lock()
	if len(f.q) >= maxQueue {
		f.q, f.resync = f.q[:0], true
	} else {
		f.q = append(f.q, m)
	}
	f.mu.Unlock()
	f.signal()
}

// kick wakes the follower, asking it to read from the stream if resync.
func (f *follower) kick(resync bool) {
	f.mu.Lock()
	f.resync = f.resync || resync
	f.mu.Unlock()
	f.signal()
}

func (f *follower) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.signal()
}

// take returns what was queued and clears it.
func (f *follower) take() (q []message, resync, closed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, resync, closed = f.q, f.resync, f.closed
	f.q, f.resync = nil, false
	return q, resync, closed
}

var errClosed = errors.New("redislog: store closed")

func (l *redisLog) Follow(ctx context.Context, epoch string, after uint64, fn func([]fanout.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f := newFollower()
	if err := l.s.subscribe(ctx, l.channel, f); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable(err)
	}
	defer l.s.unsubscribe(l.channel, f)
	check := time.NewTimer(l.s.opts.CheckInterval)
	defer check.Stop()
	read := true // subscribed first, then read: nothing falls in between
	for {
		if read {
			for {
				recs, err := l.Read(ctx, epoch, after, readBatch)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return err
				}
				if len(recs) == 0 {
					break
				}
				if err := fn(recs); err != nil {
					return err
				}
				after = recs[len(recs)-1].Seq
				if len(recs) < readBatch {
					break
				}
			}
			read = false
			check.Reset(l.s.opts.CheckInterval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			read = true
		case <-f.wake:
			q, resync, closed := f.take()
			if closed {
				return errClosed
			}
			if resync {
				read = true
				continue
			}
			batch := make([]fanout.Record, 0, len(q))
			next := after + 1
			for _, m := range q {
				if m.epoch != epoch {
					read = true // the read says whether the position is gone
					break
				}
				if m.rec.Seq < next {
					continue // read from the stream already
				}
				if m.rec.Seq > next {
					read = true // a gap: read it before anything after it
					break
				}
				batch = append(batch, m.rec)
				next++
			}
			if len(batch) > 0 {
				if err := fn(batch); err != nil {
					return err
				}
				after = next - 1
				l.observe(epoch, after)
				check.Reset(l.s.opts.CheckInterval)
			}
		}
	}
}
