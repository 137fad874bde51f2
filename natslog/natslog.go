// Package natslog is a fanout.Log on NATS JetStream: sessions on several
// server processes that share one JetStream stream serve one stream of
// events per session, with one sequence, one dedup of client publishes and
// one history.
//
// A Store is one node's handle on the stream; Store.Log returns the log
// of one session. Each session has, in the stream:
//
//   - its events on the subject PREFIX.s.NAME.m, NAME the session's name
//     in unpadded base64url after an "s". Each carries its seq and epoch
//     in the headers Fanout-Seq and Fanout-Epoch (JetStream numbers
//     messages per stream, not per subject), and the client publish's
//     identity and id in Fanout-From and Fanout-Id;
//   - its epoch, once, on PREFIX.s.NAME.e, written by the first node that
//     finds the session empty.
//
// Appending reads the session's last event and publishes the next with
// Nats-Expected-Last-Subject-Sequence set to that event's stream sequence,
// so two nodes can never give out one seq twice: the loser of a race gets
// a conflict and tries again. A client publish also carries a Nats-Msg-Id
// made of the session, the epoch, the identity and the id: JetStream
// answers a retry inside its dedup window (Options.Dedup, a duration) with
// the original message, and this package answers with that message's seq.
//
// The stream keeps Options.Window events per session
// (MaxMsgsPerSubject); older positions are gone. Reads use direct gets
// by subject. The stream republishes each event to PREFIX.t.NAME; a node
// subscribes to that subject only while it follows the session, checks
// that the seqs it receives follow one another, and reads from the stream
// what it missed (core NATS delivery is at most once). Every
// Options.Probe it also compares the session's head with its position,
// which finds a last event missed and a stream recreated while idle.
//
// Epochs: a stream deleted and recreated, or purged, or a server that lost
// its store, has no epoch message for the session any more; the next node
// to use it writes a new one, and positions in the old epoch are gone
// (fanout.ErrGone), never reused. A node restart, or a server restarted
// with its file store, keeps the epoch.
//
// Durability: the stream uses file storage and JetStream's default,
// synchronous persistence (New refuses a stream set to asynchronous
// persistence). A publish is acked once it is written to the server's
// files (and, with Options.Replicas above 1, to a majority of replicas).
// The server flushes its files to disk only every sync interval (the
// jetstream sync_interval setting from nats-server 2.10 on, two minutes
// by default): a server process killed loses nothing, but a machine that
// loses power can lose the acked events of the last interval on a single
// server. Run three replicas, or set sync_interval to always, where that
// matters. Replicas need nats-server 2.9.21 or later: earlier servers
// could store two appends that expected the same last message.
//
// All nodes of a stream must use the same Options.
package natslog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-go/fanout"
)

// Options configure a Store. The zero value is valid.
type Options struct {
	// Stream is the JetStream stream's name. Default "FANOUT".
	Stream string
	// Prefix starts every subject of the stream. Default "fanout." and
	// the stream's name.
	Prefix string
	// Window is how many events the stream keeps per session: positions
	// older than the last Window events are gone. Default 10,000.
	Window int
	// Dedup is how long the stream remembers a client publish id: a retry
	// within it gets the original seq; a retry later is appended again.
	// Default 2 minutes.
	Dedup time.Duration
	// Replicas is the stream's replica count. Default 1.
	Replicas int
	// Probe is how often a Follow compares the session's head with its
	// position, to catch up on events the core subscription missed.
	// Default 1 s.
	Probe time.Duration
	// Timeout bounds each request to the server that the caller's context
	// does not bound sooner. Default 2 s.
	Timeout time.Duration
	// Observer, if set, is told what the store's logs see of NATS (the
	// same observer the sessions are given with fanout.WithObserver will
	// do), with the session's name: LogGapRepaired when a Follow reads
	// from the stream events its core subscription skipped or had not
	// brought (a jump in seqs, or a probe that finds the head moved), and
	// LogProbeRestarted when a Follow's probe finds that the connection
	// reconnected since the last one (the subscription was made again)
	// and catches up from the stream. Default: none.
	Observer fanout.Observer
}

func (o *Options) setDefaults() error {
	if o.Stream == "" {
		o.Stream = "FANOUT"
	}
	if o.Prefix == "" {
		o.Prefix = "fanout." + o.Stream
	}
	if o.Window == 0 {
		o.Window = 10_000
	}
	if o.Dedup == 0 {
		o.Dedup = 2 * time.Minute
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Probe == 0 {
		o.Probe = time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Window < 1 || o.Dedup < 0 || o.Replicas < 1 || o.Probe < 0 || o.Timeout < 0 {
		return fmt.Errorf("natslog: invalid options %+v", *o)
	}
	return nil
}

// Store is one node's handle on the stream that holds the sessions' logs.
// It starts no goroutine and needs no closing; the NATS connection is the
// caller's.
type Store struct {
	js  jetstream.JetStream
	nc  *nats.Conn
	o   Options
	cfg jetstream.StreamConfig

	ensureMu   sync.Mutex
	lastEnsure time.Time
}

// New returns a Store on js's connection, creating the stream, or
// updating it to opts, when needed.
func New(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{js: js, nc: js.Conn(), o: opts}
	if v := s.nc.ConnectedServerVersion(); opts.Replicas > 1 && !atLeast(v, 2, 9, 21) {
		// Before 2.9.21 a replicated stream may store two messages that
		// expected the same last subject sequence (nats-server #4320).
		return nil, fmt.Errorf("natslog: a stream with replicas needs nats-server 2.9.21 or later, connected to %s", v)
	}
	s.cfg = jetstream.StreamConfig{
		Name:              opts.Stream,
		Description:       "fanout session logs",
		Subjects:          []string{opts.Prefix + ".s.>"},
		Storage:           jetstream.FileStorage,
		Replicas:          opts.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: int64(opts.Window),
		Duplicates:        opts.Dedup,
		AllowDirect:       true,
		RePublish: &jetstream.RePublish{
			Source:      opts.Prefix + ".s.*.m",
			Destination: opts.Prefix + ".t.{{wildcard(1)}}",
		},
	}
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ensure creates the stream, or updates it to the store's config.
func (s *Store) ensure(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	st, err := s.js.CreateOrUpdateStream(ctx, s.cfg)
	if err != nil {
		return fmt.Errorf("%w: natslog: stream %s: %w", fanout.ErrUnavailable, s.o.Stream, err)
	}
	c := st.CachedInfo().Config
	if c.Storage != jetstream.FileStorage || c.PersistMode == jetstream.AsyncPersistMode {
		return fmt.Errorf("natslog: stream %s must use file storage with synchronous persistence", s.o.Stream)
	}
	return nil
}

// atLeast says whether version v (as "2.9.10") is at least major.minor.patch.
func atLeast(v string, major, minor, patch int) bool {
	var got [3]int
	for i, part := range strings.SplitN(strings.SplitN(v, "-", 2)[0], ".", 3) {
		got[i], _ = strconv.Atoi(part)
	}
	want := [3]int{major, minor, patch}
	for i := range got {
		if got[i] != want[i] {
			return got[i] > want[i]
		}
	}
	return true
}

// recreate runs ensure at most every quarter of a second: a request found
// no stream to answer it, or no answer, and the stream may have been
// deleted, or lost with a server's store. A call while another runs
// returns at once.
func (s *Store) recreate(ctx context.Context) {
	if !s.ensureMu.TryLock() {
		return
	}
	defer s.ensureMu.Unlock()
	if time.Since(s.lastEnsure) < 250*time.Millisecond {
		return
	}
	s.lastEnsure = time.Now()
	_ = s.ensure(ctx)
}

// Log returns the log of the session named name.
func (s *Store) Log(name string) fanout.Log {
	tok := "s" + base64.RawURLEncoding.EncodeToString([]byte(name))
	l := &natsLog{
		s:     s,
		turn:  make(chan struct{}, 1),
		name:  name,
		subj:  s.o.Prefix + ".s." + tok + ".m",
		esubj: s.o.Prefix + ".s." + tok + ".e",
		tail:  s.o.Prefix + ".t." + tok,
	}
	l.reconnects.Store(s.nc.Stats().Reconnects)
	return l
}

// Headers of an event.
const (
	hdrEpoch = "Fanout-Epoch"
	hdrSeq   = "Fanout-Seq"
	hdrFrom  = "Fanout-From"
	hdrID    = "Fanout-Id"
)

type natsLog struct {
	s     *Store
	name  string
	subj  string // events
	esubj string // the epoch
	tail  string // events republished

	// turn serializes this handle's appends, so that they do not conflict
	// with each other; whoever holds it owns head.
	turn chan struct{}
	head *position // the session's last event as of the last append; nil when not known

	// reconnects is the connection's reconnect count as a probe of this
	// log's Follows last saw it, for Options.Observer.
	reconnects atomic.Uint64
}

// position is where the session's last event is.
type position struct {
	epoch string
	seq   uint64
	sseq  uint64 // its stream sequence; 0 before the first event
}

// entry is one event as the stream holds it.
type entry struct {
	epoch string
	rec   fanout.Record
	sseq  uint64 // stream sequence
	msgID string
}

var errNotEvent = errors.New("natslog: message is not an event")

func parseEntry(m *nats.Msg) (entry, error) {
	h := m.Header
	seq, err := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
	if err != nil || h.Get(hdrEpoch) == "" {
		return entry{}, errNotEvent
	}
	sseq, err := strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return entry{}, errNotEvent
	}
	from, err1 := url.QueryUnescape(h.Get(hdrFrom))
	id, err2 := url.QueryUnescape(h.Get(hdrID))
	if err1 != nil || err2 != nil {
		return entry{}, errNotEvent
	}
	return entry{
		epoch: h.Get(hdrEpoch),
		rec:   fanout.Record{Seq: seq, From: from, ID: id, Data: m.Data},
		sseq:  sseq,
		msgID: h.Get(jetstream.MsgIDHeader),
	}, nil
}

// directReq is a JetStream direct get.
type directReq struct {
	Seq        uint64 `json:"seq,omitempty"`
	LastBySubj string `json:"last_by_subj,omitempty"`
	NextBySubj string `json:"next_by_subj,omitempty"`
	Batch      int    `json:"batch,omitempty"` // nats-server 2.11 and later
}

// get returns the message req names, nil when there is none.
func (l *natsLog) get(ctx context.Context, req directReq) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !l.s.nc.IsConnected() {
		return nil, unavailable(nats.ErrConnectionClosed)
	}
	body, _ := json.Marshal(req)
	rctx, cancel := context.WithTimeout(ctx, l.s.o.Timeout)
	defer cancel()
	m, err := l.s.nc.RequestWithContext(rctx, "$JS.API.DIRECT.GET."+l.s.o.Stream, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		l.s.recreate(ctx)
		return nil, unavailable(err)
	case err != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// Some servers do not answer a direct get of a stream they do
			// not have: it may be gone.
			l.s.recreate(ctx)
		}
		return nil, unavailable(err)
	}
	switch status := m.Header.Get("Status"); status {
	case "":
		return m, nil
	case "404":
		return nil, nil
	default:
		return nil, unavailable(fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description")))
	}
}

func unavailable(err error) error {
	return fmt.Errorf("%w: natslog: %w", fanout.ErrUnavailable, err)
}

// event returns the event req names, nil when there is none.
func (l *natsLog) event(ctx context.Context, req directReq) (*entry, error) {
	m, err := l.get(ctx, req)
	if err != nil || m == nil {
		return nil, err
	}
	e, err := parseEntry(m)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// state returns the session's epoch, head, and last event (nil before the
// first). An empty session gets its epoch here if it has none.
func (l *natsLog) state(ctx context.Context) (string, uint64, *entry, error) {
	last, err := l.event(ctx, directReq{LastBySubj: l.subj})
	if err != nil {
		return "", 0, nil, err
	}
	if last != nil {
		return last.epoch, last.rec.Seq, last, nil
	}
	epoch, err := l.epoch(ctx)
	return epoch, 0, nil, err
}

// epoch returns the epoch of the session's epoch message, writing one if
// there is none.
func (l *natsLog) epoch(ctx context.Context) (string, error) {
	for {
		m, err := l.get(ctx, directReq{LastBySubj: l.esubj})
		if err != nil {
			return "", err
		}
		if m != nil && len(m.Data) > 0 {
			return string(m.Data), nil
		}
		epoch := newEpoch()
		w := nats.NewMsg(l.esubj)
		w.Data = []byte(epoch)
		w.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		_, err = l.publish(ctx, w)
		switch {
		case err == nil:
			return epoch, nil
		case isConflict(err):
			continue // another node wrote it first
		default:
			return "", err
		}
	}
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (l *natsLog) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !l.s.nc.IsConnected() {
		return nil, unavailable(nats.ErrConnectionClosed)
	}
	rctx, cancel := context.WithTimeout(ctx, l.s.o.Timeout)
	defer cancel()
	ack, err := l.s.js.PublishMsg(rctx, m, jetstream.WithRetryAttempts(0))
	switch {
	case err == nil:
		return ack, nil
	case isConflict(err):
		return nil, err
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		l.s.recreate(ctx)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, unavailable(err)
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// msgID is the Nats-Msg-Id of a client publish: the same for every retry
// of it, within one epoch of one session.
func (l *natsLog) msgID(epoch, from, id string) string {
	h := sha256.New()
	for _, s := range []string{l.s.o.Stream, l.name, epoch, from, id} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func (l *natsLog) Append(ctx context.Context, from, id string, data []byte) (fanout.Appended, error) {
	if err := ctx.Err(); err != nil {
		return fanout.Appended{}, err
	}
	select {
	case l.turn <- struct{}{}:
		defer func() { <-l.turn }()
	case <-ctx.Done():
		return fanout.Appended{}, ctx.Err()
	}
	for {
		if l.head == nil {
			epoch, head, last, err := l.state(ctx)
			if err != nil {
				return fanout.Appended{}, err
			}
			l.head = &position{epoch: epoch, seq: head}
			if last != nil {
				l.head.sseq = last.sseq
			}
		}
		p := *l.head
		m := nats.NewMsg(l.subj)
		m.Data = data
		m.Header.Set(hdrEpoch, p.epoch)
		m.Header.Set(hdrSeq, strconv.FormatUint(p.seq+1, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(p.sseq, 10))
		var mid string
		if from != "" || id != "" {
			m.Header.Set(hdrFrom, url.QueryEscape(from))
			m.Header.Set(hdrID, url.QueryEscape(id))
		}
		if id != "" {
			mid = l.msgID(p.epoch, from, id)
			m.Header.Set(jetstream.MsgIDHeader, mid)
		}
		ack, err := l.publish(ctx, m)
		switch {
		case err == nil && !ack.Duplicate:
			l.head = &position{epoch: p.epoch, seq: p.seq + 1, sseq: ack.Sequence}
			return fanout.Appended{Epoch: p.epoch, Seq: p.seq + 1}, nil
		case err == nil:
			// A retry inside the dedup window: the original's seq.
			orig, err := l.event(ctx, directReq{Seq: ack.Sequence})
			if err != nil {
				return fanout.Appended{}, err
			}
			if orig == nil || orig.msgID != mid {
				return fanout.Appended{}, fmt.Errorf("natslog: publish %q was committed, but its event is no longer in the stream", id)
			}
			return fanout.Appended{Epoch: orig.epoch, Seq: orig.rec.Seq, Duplicate: true}, nil
		case isConflict(err):
			// Another node appended first, or the session is not where
			// this handle saw it last. On one server the expected
			// sequence is checked before the dedup: a retry of a publish
			// committed as the last event lands here.
			l.head = nil
			if mid != "" {
				last, err := l.event(ctx, directReq{LastBySubj: l.subj})
				if err != nil {
					return fanout.Appended{}, err
				}
				if last != nil && last.msgID == mid {
					return fanout.Appended{Epoch: last.epoch, Seq: last.rec.Seq, Duplicate: true}, nil
				}
			}
		default:
			l.head = nil
			return fanout.Appended{}, err
		}
	}
}

func (l *natsLog) Head(ctx context.Context) (string, uint64, error) {
	epoch, head, _, err := l.state(ctx)
	return epoch, head, err
}

func (l *natsLog) Read(ctx context.Context, epoch string, after uint64, limit int) ([]fanout.Record, error) {
	recs, _, err := l.read(ctx, epoch, after, 0, limit)
	return recs, err
}

// read returns up to limit events after seq after, and the stream
// sequence of the last. at is the stream sequence of the event at after
// when the caller knows it, 0 when not.
func (l *natsLog) read(ctx context.Context, epoch string, after, at uint64, limit int) ([]fanout.Record, uint64, error) {
	e, head, last, err := l.state(ctx)
	if err != nil {
		return nil, 0, err
	}
	if e != epoch || after > head {
		return nil, 0, fanout.ErrGone
	}
	if after == head && last != nil {
		return nil, last.sseq, nil
	}
	if after == head || limit <= 0 {
		return nil, at, nil
	}
	var pending []entry // read, not yet looked at
	if at == 0 {
		first, err := l.locate(ctx, after+1, last)
		if err != nil {
			return nil, 0, err
		}
		if first == nil {
			return nil, 0, fanout.ErrGone
		}
		pending = []entry{*first}
	}
	var recs []fanout.Record
	for len(recs) < limit && after < head {
		if len(pending) == 0 {
			if pending, err = l.events(ctx, at+1, min(limit-len(recs), int(min(head-after, 1<<16)))); err != nil {
				return nil, 0, err
			}
			if len(pending) == 0 {
				break
			}
		}
		next := pending[0]
		pending = pending[1:]
		switch {
		case next.epoch == epoch && next.rec.Seq <= after:
			// A second event with a seq already taken, which a server
			// letting two appends through at once would store: the first
			// one is the event. (Servers before 2.9.21 do, for streams with
			// replicas; New refuses those.)
			at = next.sseq
		case next.epoch != epoch || next.rec.Seq != after+1:
			return nil, 0, fanout.ErrGone // trimmed, or a new epoch, meanwhile
		default:
			recs = append(recs, next.rec)
			after, at = next.rec.Seq, next.sseq
		}
	}
	return recs, at, nil
}

// batchGets says whether the connected server answers direct gets of
// several messages at once (nats-server 2.11 and later).
func (l *natsLog) batchGets() bool { return atLeast(l.s.nc.ConnectedServerVersion(), 2, 11, 0) }

// events returns up to n of the session's events from stream sequence
// from on: in one batched direct get where the server has them, else one.
func (l *natsLog) events(ctx context.Context, from uint64, n int) ([]entry, error) {
	if n <= 1 || !l.batchGets() {
		e, err := l.event(ctx, directReq{Seq: from, NextBySubj: l.subj})
		if err != nil || e == nil {
			return nil, err
		}
		return []entry{*e}, nil
	}
	if !l.s.nc.IsConnected() {
		return nil, unavailable(nats.ErrConnectionClosed)
	}
	inbox := l.s.nc.NewInbox()
	sub, err := l.s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, unavailable(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	body, _ := json.Marshal(directReq{Seq: from, NextBySubj: l.subj, Batch: n})
	if err := l.s.nc.PublishRequest("$JS.API.DIRECT.GET."+l.s.o.Stream, inbox, body); err != nil {
		return nil, unavailable(err)
	}
	rctx, cancel := context.WithTimeout(ctx, l.s.o.Timeout)
	defer cancel()
	var out []entry
	for {
		m, err := sub.NextMsgWithContext(rctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, unavailable(err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
			e, err := parseEntry(m)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		case "204", "404": // the end of the batch; nothing at all
			return out, nil
		case "503":
			l.s.recreate(ctx)
			return nil, unavailable(nats.ErrNoResponders)
		default:
			return nil, unavailable(fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description")))
		}
	}
}

// locate returns the event with seq want, searching the stream sequences
// between the session's first and last events; fanout.ErrGone when it is
// no longer kept.
func (l *natsLog) locate(ctx context.Context, want uint64, last *entry) (*entry, error) {
	first, err := l.event(ctx, directReq{Seq: 1, NextBySubj: l.subj})
	if err != nil {
		return nil, err
	}
	if first == nil || first.epoch != last.epoch || want < first.rec.Seq {
		return nil, fanout.ErrGone
	}
	// The smallest stream sequence whose next event has a seq of at least
	// want: seqs grow with stream sequences.
	lo, hi := first.sseq, last.sseq
	for lo < hi {
		mid := lo + (hi-lo)/2
		e, err := l.event(ctx, directReq{Seq: mid, NextBySubj: l.subj})
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, fanout.ErrGone
		}
		if e.rec.Seq < want {
			lo = e.sseq + 1
		} else {
			hi = mid
		}
	}
	return l.event(ctx, directReq{Seq: lo, NextBySubj: l.subj})
}

// followBatch is the most records one call of a Follow's fn gets.
const followBatch = 256

func (l *natsLog) Follow(ctx context.Context, epoch string, after uint64, fn func([]fanout.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Subscribe before catching up, so that nothing committed meanwhile
	// is missed; what arrives twice is skipped by seq.
	tail := make(chan *nats.Msg, 4*followBatch)
	sub, err := l.s.nc.Subscribe(l.tail, func(m *nats.Msg) {
		select {
		case tail <- m:
		default: // a slow follower: the gap is caught up from the stream
		}
	})
	if err != nil {
		return unavailable(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	fctx, cancel := context.WithTimeout(ctx, l.s.o.Timeout)
	err = l.s.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable(err)
	}

	f := follower{l: l, epoch: epoch, pos: after, fn: fn, obs: l.s.o.Observer}
	if _, err := f.catchUp(ctx); err != nil {
		return err
	}
	probe := time.NewTicker(l.s.o.Probe)
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-tail:
			if err := f.tail(ctx, m, tail); err != nil {
				return err
			}
		case <-probe.C:
			if f.obs != nil {
				// Counted on the log rather than the Follow, so that a
				// Follow that failed across the reconnect and was
				// followed again still reports it.
				if r := l.s.nc.Stats().Reconnects; l.reconnects.Swap(r) != r {
					f.obs.LogProbeRestarted(l.name)
				}
			}
			n, err := f.catchUp(ctx)
			if err != nil {
				return err
			}
			if n > 0 && f.obs != nil {
				f.obs.LogGapRepaired(l.name)
			}
		}
	}
}

// follower is the state of one Follow.
type follower struct {
	l     *natsLog
	epoch string
	pos   uint64 // the seq delivered last
	at    uint64 // its stream sequence, 0 when not known
	fn    func([]fanout.Record) error
	obs   fanout.Observer // Options.Observer; nil: none
}

// catchUp delivers what the stream has after the position, and returns
// how many events that was.
func (f *follower) catchUp(ctx context.Context) (n int, err error) {
	for {
		recs, at, err := f.l.read(ctx, f.epoch, f.pos, f.at, followBatch)
		if err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			return n, err
		}
		if len(recs) == 0 {
			f.at = at
			return n, nil
		}
		if err := f.fn(recs); err != nil {
			return n, err
		}
		n += len(recs)
		f.pos, f.at = recs[len(recs)-1].Seq, at
	}
}

// tail delivers m and what else is waiting in the tail, catching up from
// the stream on a gap.
func (f *follower) tail(ctx context.Context, m *nats.Msg, more <-chan *nats.Msg) error {
	var batch []fanout.Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := f.fn(batch)
		batch = nil
		return err
	}
	for {
		e, err := parseEntry(m)
		switch {
		case err != nil:
		case e.epoch != f.epoch:
			if err := flush(); err != nil {
				return err
			}
			return fmt.Errorf("%w: the session has a new epoch", fanout.ErrGone)
		case e.rec.Seq <= f.pos:
		case e.rec.Seq == f.pos+1:
			batch = append(batch, e.rec)
			f.pos, f.at = e.rec.Seq, e.sseq
		default: // a gap: the tail is at most once
			if err := flush(); err != nil {
				return err
			}
			n, err := f.catchUp(ctx)
			if err != nil {
				return err
			}
			if n > 0 && f.obs != nil {
				f.obs.LogGapRepaired(f.l.name)
			}
		}
		if len(batch) == followBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		select {
		case m = <-more:
		default:
			return flush()
		}
	}
}
