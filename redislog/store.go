// Package redislog is a fanout.Log on Redis: sessions of the same name on
// several server processes, each given a log from a Store on one Redis,
// serve one stream, with one sequence, one history and one dedup of client
// publishes.
//
// One Store per process: it holds one pub/sub connection, shared by every
// log it follows, next to the Redis client the caller passes in (whose
// connections it shares for commands). A node follows only the sessions it
// serves.
//
// Each append is one Lua script: the dedup check, the epoch, the next seq
// (HINCRBY), XADD to the session's stream trimmed to the window, and
// PUBLISH of the event, atomically; appends that wait for one log on one
// node go together in one script call. Followers take events from pub/sub,
// check that their seqs follow on, and read any gap from the stream
// before they deliver what comes after it. Redis pub/sub is at most once
// and a subscription can fall silent without an error, so the store
// publishes a probe to itself every ProbeInterval through its own
// subscription and, when one does not come back, reconnects, resubscribes
// and has every follower catch up from the stream.
//
// The epoch lives in Redis with the events. It survives any restart of
// the nodes, and of Redis with its data; when the data is lost (FLUSHALL,
// a restart without persistence) the next call starts a new epoch, and
// every position in the old one is gone: clients are told resumed:false,
// never given a gap. After an asynchronous failover Redis can come back
// with a lower head under the same epoch; the first node that has seen a
// higher seq and touches the log moves it to a new epoch, so no seq is
// reused within one.
package redislog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout"
)

// Options configure a Store. The zero value of each field is its default.
type Options struct {
	// Prefix starts every key and channel name. Default "fanout".
	Prefix string
	// Window is how many events each log retains for reads and resumes
	// (the shared window). Default 10,000.
	Window int
	// DedupWindow is how many of the latest client publish ids each log
	// remembers. A retry of an older id is appended again. Default 10,000.
	DedupWindow int
	// TTL, if set, makes a log's keys expire TTL after its last append;
	// the next append after that starts a new epoch. Default: never.
	TTL time.Duration
	// ProbeInterval is how often the store checks its pub/sub connection
	// by publishing to itself; a probe not back by the next one makes it
	// reconnect. Default 1 s.
	ProbeInterval time.Duration
	// CheckInterval is how often a follower that has received nothing
	// reads the log's head anyway. Default 5 s.
	CheckInterval time.Duration
	// Timeout bounds one append's round trip to Redis (several appends
	// waiting for one log share it). Default 5 s.
	Timeout time.Duration
	// Observer, if set, is told what the store sees of Redis (the same
	// observer the sessions are given with fanout.WithObserver will do):
	// LogGapRepaired with the session's name when a follower reads from
	// the stream events its pub/sub tail skipped or had not brought (a
	// jump in seqs, a full queue, a quiet check or the catch-up after a
	// reconnect that finds the head moved); LogProbeRestarted with the
	// Prefix when the store's pub/sub connection, once up, failed or fell
	// silent and the store reconnects and resubscribes; and LogError with
	// the Prefix and op "pubsub" for each error that ends or prevents
	// that connection. Default: none.
	Observer fanout.Observer
}

// maxQueue bounds the events pub/sub hands one follower before it takes
// them; past it the follower reads them from the stream instead.
const maxQueue = 4096

// readBatch is how many events a follower reads from the stream at once.
const readBatch = 1024

// Store is one node's access to the logs on one Redis. It is safe for
// concurrent use. Close it when done; the Redis client stays the caller's.
type Store struct {
	client rueidis.Client
	opts   Options
	node   string // starts the epochs this node creates
	probe  string // this store's probe channel

	window, dedup, ttl string // the options as script arguments

	mu   sync.Mutex
	subs map[string]map[*follower]struct{} // channel → local followers

	subMu sync.Mutex              // serializes SUBSCRIBE and UNSUBSCRIBE on dc
	dc    rueidis.DedicatedClient // the pub/sub connection; nil while down; written under subMu and mu

	probeGot atomic.Uint64 // the last probe that came back

	flushers flushers // the logs' append flushers, which Close waits for

	stop context.CancelFunc
	done chan struct{}
}

// New returns a store of logs on the Redis that client talks to, and
// starts its pub/sub connection.
func New(client rueidis.Client, opts Options) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil Redis client", fanout.ErrInvalidOption)
	}
	if opts.Window < 0 || opts.DedupWindow < 0 || opts.TTL < 0 || opts.ProbeInterval < 0 || opts.CheckInterval < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative redislog option", fanout.ErrInvalidOption)
	}
	if opts.TTL > 0 && opts.TTL < time.Second {
		return nil, fmt.Errorf("%w: redislog TTL below 1s", fanout.ErrInvalidOption)
	}
	if opts.Prefix == "" {
		opts.Prefix = "fanout"
	}
	if opts.Window == 0 {
		opts.Window = 10_000
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 10_000
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = 5 * time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	node := hex.EncodeToString(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		client: client,
		opts:   opts,
		node:   node,
		probe:  opts.Prefix + ":probe:" + node,
		subs:   make(map[string]map[*follower]struct{}),
		window: strconv.Itoa(opts.Window),
		dedup:  strconv.Itoa(opts.DedupWindow),
		ttl:    strconv.FormatInt(int64(opts.TTL/time.Second), 10),
		stop:   cancel,
		done:   make(chan struct{}),
	}
	go s.run(ctx)
	return s, nil
}

// Close stops the store's pub/sub connection. Follows in progress end
// with an error; logs from the store may not be used afterwards.
func (s *Store) Close() {
	s.stop()
	<-s.done
	s.flushers.close()
}

// flushers counts running append flushers; after close no more start.
type flushers struct {
	mu      sync.Mutex
	n       int
	closed  bool
	drained chan struct{} // closed when n reaches 0 after close
}

func (f *flushers) start() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *flushers) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.drained != nil {
		close(f.drained)
		f.drained = nil
	}
}

// close stops new flushers and waits for the running ones to end.
func (f *flushers) close() {
	f.mu.Lock()
	f.closed = true
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	drained := make(chan struct{})
	f.drained = drained
	f.mu.Unlock()
	<-drained
}

// Log returns the log of the session named name. Logs of one name from
// stores on the same Redis and Prefix are one log.
func (s *Store) Log(name string) fanout.Log {
	base := "{" + s.opts.Prefix + ":" + name + "}"
	return &redisLog{
		s:       s,
		name:    name,
		keys:    []string{base + ":m", base + ":s", base + ":d"},
		channel: base + ":c",
	}
}

var errProbe = errors.New("redislog: pub/sub probe did not come back")

// run keeps the pub/sub connection up until ctx ends.
func (s *Store) run(ctx context.Context) {
	defer close(s.done)
	defer s.closeFollowers()
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		up, err := s.serve(ctx)
		if o := s.opts.Observer; o != nil && ctx.Err() == nil {
			if err != nil {
				o.LogError(s.opts.Prefix, "pubsub", err)
			}
			if up {
				o.LogProbeRestarted(s.opts.Prefix)
			}
		}
		if time.Since(start) > 10*time.Second {
			backoff = 10 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// serve opens a pub/sub connection, subscribes the probe channel and every
// followed one, has every follower catch up, then probes the connection
// until it fails or ctx ends. up says whether it got as far as probing.
func (s *Store) serve(ctx context.Context) (up bool, err error) {
	dc, _ := s.client.Dedicate()
	defer dc.Close()
	errs := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.dispatch})

	s.subMu.Lock()
	s.mu.Lock()
	channels := []string{s.probe}
	for ch := range s.subs {
		channels = append(channels, ch)
	}
	s.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, s.opts.ProbeInterval+5*time.Second)
	err = dc.Do(sctx, dc.B().Subscribe().Channel(channels...).Build()).Error()
	cancel()
	if err != nil {
		s.subMu.Unlock()
		return false, err
	}
	s.mu.Lock()
	s.dc = dc
	for _, fs := range s.subs {
		for f := range fs {
			f.kick(true)
		}
	}
	s.mu.Unlock()
	s.subMu.Unlock()
	defer func() {
		s.subMu.Lock()
		s.mu.Lock()
		s.dc = nil
		s.mu.Unlock()
		s.subMu.Unlock()
	}()

	tick := time.NewTicker(s.opts.ProbeInterval)
	defer tick.Stop()
	var sent uint64
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-errs:
			if err == nil {
				err = errors.New("redislog: pub/sub connection closed")
			}
			return true, err
		case <-tick.C:
			if s.probeGot.Load() != sent {
				return true, errProbe
			}
			sent++
			pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeInterval)
			n, err := s.client.Do(pctx, s.client.B().Publish().Channel(s.probe).Message(strconv.FormatUint(sent, 10)).Build()).AsInt64()
			cancel()
			if err != nil {
				return true, err
			}
			if n == 0 {
				return true, errProbe // Redis no longer has our subscription
			}
		}
	}
}

// dispatch hands a pub/sub message to the local followers of its channel.
// rueidis calls it from one goroutine, in the order messages arrive.
func (s *Store) dispatch(m rueidis.PubSubMessage) {
	if m.Channel == s.probe {
		if n, err := strconv.ParseUint(m.Message, 10, 64); err == nil {
			s.probeGot.Store(n)
		}
		return
	}
	msgs, ok := parseMessages(m.Message)
	s.mu.Lock()
	for f := range s.subs[m.Channel] {
		if !ok {
			f.kick(true)
			continue
		}
		for _, msg := range msgs {
			f.push(msg)
		}
	}
	s.mu.Unlock()
}

// subscribe registers f as a follower of channel, subscribing the
// connection if f is the channel's first local follower.
func (s *Store) subscribe(ctx context.Context, channel string, f *follower) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.mu.Lock()
	if s.subs == nil {
		s.mu.Unlock()
		return errors.New("redislog: store closed")
	}
	fs := s.subs[channel]
	first := fs == nil
	if first {
		fs = make(map[*follower]struct{})
		s.subs[channel] = fs
	}
	fs[f] = struct{}{}
	dc := s.dc
	s.mu.Unlock()
	if !first || dc == nil {
		// Subscribed already, or the connection is down: serve
		// subscribes it when it is back, and kicks f.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(channel).Build()).Error(); err != nil {
		s.removeLocked(channel, f)
		return err
	}
	return nil
}

// unsubscribe removes f, unsubscribing the connection from channel if f
// was its last local follower.
func (s *Store) unsubscribe(channel string, f *follower) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if !s.removeLocked(channel, f) {
		return
	}
	s.mu.Lock()
	dc := s.dc
	s.mu.Unlock()
	if dc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// On failure the connection keeps a subscription nobody reads;
	// dispatch drops its messages, and the next reconnect forgets it.
	_ = dc.Do(ctx, dc.B().Unsubscribe().Channel(channel).Build()).Error()
}

// removeLocked removes f and reports whether channel has no local
// follower left. The caller holds subMu.
func (s *Store) removeLocked(channel string, f *follower) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := s.subs[channel]
	delete(fs, f)
	if len(fs) == 0 && fs != nil {
		delete(s.subs, channel)
		return true
	}
	return false
}

// closeFollowers ends every follow when the store closes.
func (s *Store) closeFollowers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fs := range s.subs {
		for f := range fs {
			f.close()
		}
	}
	s.subs = nil
}
