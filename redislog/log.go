package redislog

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	name    string
	keys    []string // meta, stream, dedup
	channel string

	mu    sync.Mutex
	epoch string // the newest epoch this node has seen
	seen  uint64 // the highest seq it has seen in it

	qmu      sync.Mutex
	queue    []*appendReq // appends waiting for the flusher
	flushing bool         // a flusher runs
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

// An append waits in the log's queue; one goroutine per log and node at a
// time, the flusher, commits what is queued in one script call (up to
// maxBatch events), answers each, and goes on while the queue has more,
// so concurrent appends to one log share round trips. The flusher is
// started by the append that finds none running and ends when the queue
// is empty; Store.Close waits for it.
const maxBatch = 256

// appendReq is one append waiting in the queue.
type appendReq struct {
	from, id string
	data     []byte
	done     chan struct{} // closed once res and err are set
	res      fanout.Appended
	err      error
}

func (l *redisLog) Append(ctx context.Context, from, id string, data []byte) (fanout.Appended, error) {
	if err := ctx.Err(); err != nil {
		return fanout.Appended{}, err
	}
	r := &appendReq{from: from, id: id, data: data, done: make(chan struct{})}
	l.qmu.Lock()
	l.queue = append(l.queue, r)
	start := !l.flushing
	if start {
		if !l.s.flushers.start() {
			l.queue = l.queue[:len(l.queue)-1]
			l.qmu.Unlock()
			return fanout.Appended{}, unavailable(errClosed)
		}
		l.flushing = true
	}
	l.qmu.Unlock()
	if start {
		go l.flush(context.WithoutCancel(ctx))
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		// Still queued: it will not be committed. Already taken by the
		// flusher: it may still commit, not acked, and a retry of a
		// client publish gets its seq.
		l.qmu.Lock()
		if i := slices.Index(l.queue, r); i >= 0 {
			l.queue = slices.Delete(l.queue, i, i+1)
		}
		l.qmu.Unlock()
		return fanout.Appended{}, unavailable(ctx.Err())
	}
}

// flush commits the queue, batch by batch, until it is empty.
func (l *redisLog) flush(ctx context.Context) {
	defer l.s.flushers.done()
	for {
		l.qmu.Lock()
		n := min(len(l.queue), maxBatch)
		if n == 0 {
			l.flushing = false
			l.queue = nil
			l.qmu.Unlock()
			return
		}
		batch := l.queue[:n:n]
		l.queue = l.queue[n:]
		l.qmu.Unlock()
		l.commit(ctx, batch)
	}
}

// commit runs the append script for batch and answers each request.
func (l *redisLog) commit(ctx context.Context, batch []*appendReq) {
	ctx, cancel := context.WithTimeout(ctx, l.s.opts.Timeout)
	defer cancel()
	args := l.args(strconv.Itoa(len(batch)), l.s.window, l.s.dedup, l.channel, l.s.ttl)
	for _, r := range batch {
		args = append(args, r.from, r.id, rueidis.BinaryString(r.data))
	}
	res, err := appendScript.Exec(ctx, l.s.client, l.keys, args).ToArray()
	if err == nil && len(res) != 1+2*len(batch) {
		err = fmt.Errorf("redislog: append returned %d values for %d events", len(res), len(batch))
	}
	var epoch string
	if err == nil {
		epoch, err = res[0].ToString()
	}
	var top uint64
	for i, r := range batch {
		if err == nil {
			seq, err1 := res[1+2*i].AsUint64()
			dup, err2 := res[2+2*i].AsInt64()
			if e := errors.Join(err1, err2); e != nil {
				r.err = unavailable(e)
			} else {
				r.res = fanout.Appended{Epoch: epoch, Seq: seq, Duplicate: dup == 1}
				if dup == 0 {
					top = max(top, seq)
				}
			}
		} else {
			r.err = unavailable(err)
		}
		close(r.done)
	}
	if top > 0 {
		l.observe(epoch, top)
	}
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

// parseMessages decodes one pub/sub message: events, each
// "<seq> <epoch> <len(from)> <len(id)> <len(data)> <from><id><data>".
func parseMessages(s string) ([]message, bool) {
	var out []message
	for s != "" {
		var head [5]string
		for i := range head {
			j := strings.IndexByte(s, ' ')
			if j < 0 {
				return nil, false
			}
			head[i], s = s[:j], s[j+1:]
		}
		seq, err1 := strconv.ParseUint(head[0], 10, 64)
		nf, err2 := strconv.Atoi(head[2])
		ni, err3 := strconv.Atoi(head[3])
		nd, err4 := strconv.Atoi(head[4])
		if errors.Join(err1, err2, err3, err4) != nil || nf < 0 || ni < 0 || nd < 0 || nf+ni+nd > len(s) {
			return nil, false
		}
		out = append(out, message{epoch: head[1], rec: fanout.Record{
			Seq:  seq,
			From: s[:nf],
			ID:   s[nf : nf+ni],
			Data: []byte(s[nf+ni : nf+ni+nd]),
		}})
		s = s[nf+ni+nd:]
	}
	return out, true
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
	first := true
	for {
		if read {
			gap := false
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
				gap = !first
				if len(recs) < readBatch {
					break
				}
			}
			if gap && l.s.opts.Observer != nil {
				l.s.opts.Observer.LogGapRepaired(l.name)
			}
			read, first = false, false
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
