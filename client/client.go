package client

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one event of the session's sequence. Seq and Epoch together
// are its position: what an application stores with its state to start a
// later client after it (WithStartAfter).
type Event struct {
	Seq   uint64          // position in the session's sequence, from 1
	Epoch string          // the incarnation of the session's history Seq belongs to
	Data  json.RawMessage // the payload as published
	From  string          // the publisher's identity as the server authenticated it; "" for server publishes and anonymous clients
	ID    string          // the publish id of a client publish; "" for server publishes
}

// Stats counts what the client did to keep its stream exact.
type Stats struct {
	Reconnects  uint64 // connections made after the first one
	Resets      uint64 // resumes the server could not serve (see WithOnReset)
	Duplicates  uint64 // events dropped because their seq had already been received
	Resent      uint64 // publishes sent again on a new connection
	RateLimited uint64 // rate_limited refusals; the publish is sent again after a pause
	Snapshots   uint64 // snapshots handed to the WithOnSnapshot function
	Unavailable uint64 // unavailable refusals (the server's log could not commit); sent again after a pause
	Failovers   uint64 // moves to the next URL of WithFailover after a failed connection attempt
}

// Client is a connection to a fanout session that survives disconnects: it
// reconnects, resumes and retries publishes until Close or a terminal error.
// All its methods are safe to call from any goroutine.
type Client struct {
	cfg     config
	bases   []*url.URL // the URL given to Dial, then WithFailover's, without after and epoch
	cur     int        // the one connections go to; only the goroutine that connects uses it
	log     *slog.Logger
	backoff backoff

	ctx     context.Context // cancelled when the client stops
	cancel  context.CancelFunc
	done    chan struct{}
	events  chan Event    // nil when a handler is set
	pubKick chan struct{} // a publish is waiting to be sent

	reconnects, resets, duplicates, resent, rateLimited, snapshots, unavailable, failovers atomic.Uint64

	// Where the connection is: the position to resume from. Only the run
	// goroutine uses these (Dial before it starts).
	rseq   uint64
	repoch string
	known  bool // rseq and repoch are a position to resume from

	qKick       chan struct{} // the queue has items, or input is done
	deliverDone chan struct{}

	mu        sync.Mutex
	seq       uint64 // last processed seq and its epoch: written by deliver
	epoch     string
	queue     []item // received, not yet delivered
	overflow  *conn  // the connection whose events no longer fit in the queue
	inputDone bool   // no more items will be queued
	gen       uint64
	err       error
	stopped   bool
	pending   list.List // *pub, in publish order
	pubs      map[string]*pub
	window    sendWindow // paces pending publishes on connection gen
}

// Dial connects to the session at url (ws://, wss://, http:// or https://)
// and returns once the server has welcomed the client. A refused handshake
// is a *HandshakeError. ctx bounds this first connection only; from then on
// the client runs in the background until Close or a terminal error (see the
// package documentation), reconnecting as needed.
func Dial(ctx context.Context, rawURL string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	var bases []*url.URL
	for i, raw := range append([]string{rawURL}, cfg.failover...) {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("fanout/client: bad URL: %w", err)
		}
		switch u.Scheme {
		case "ws", "wss", "http", "https":
		default:
			return nil, fmt.Errorf("fanout/client: bad URL scheme %q", u.Scheme)
		}
		if i == 0 {
			if err := takeStart(&cfg, u); err != nil {
				return nil, err
			}
		} else {
			q := u.Query()
			q.Del("after")
			q.Del("epoch")
			u.RawQuery = q.Encode()
		}
		bases = append(bases, u)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:         cfg,
		bases:       bases,
		log:         cfg.logger,
		backoff:     backoff{min: cfg.minBackoff, max: cfg.maxBackoff},
		done:        make(chan struct{}),
		pubKick:     make(chan struct{}, 1),
		rseq:        cfg.startSeq,
		repoch:      cfg.startEpoch,
		known:       cfg.startSet,
		seq:         cfg.startSeq,
		epoch:       cfg.startEpoch,
		qKick:       make(chan struct{}, 1),
		deliverDone: make(chan struct{}),
		pubs:        make(map[string]*pub),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.handler == nil {
		c.events = make(chan Event)
	}
	// The first connection tries each URL once, in order.
	cn, err := c.connect(ctx)
	for i := 1; err != nil && i < len(bases) && !terminal(err) && ctx.Err() == nil; i++ {
		c.failover()
		cn, err = c.connect(ctx)
	}
	if err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.deliver()
	go c.run(cn)
	return c, nil
}

// takeStart moves after and epoch from the URL's query into the start
// position, unless WithStartAfter set one, so that reconnects can replace
// them.
func takeStart(cfg *config, u *url.URL) error {
	q := u.Query()
	if !q.Has("after") && !q.Has("epoch") {
		return nil
	}
	if !cfg.startSet {
		if !q.Has("after") {
			return fmt.Errorf("fanout/client: epoch without after in URL")
		}
		seq, err := strconv.ParseUint(q.Get("after"), 10, 64)
		if err != nil {
			return fmt.Errorf("fanout/client: bad after in URL: %w", err)
		}
		cfg.startSet, cfg.startSeq, cfg.startEpoch = true, seq, q.Get("epoch")
	}
	q.Del("after")
	q.Del("epoch")
	u.RawQuery = q.Encode()
	return nil
}

// connURL is the URL of the next connection: the caller's, plus the
// position to resume from when there is one.
func (c *Client) connURL() string {
	base := c.bases[c.cur]
	if !c.known {
		return base.String()
	}
	u := *base
	q := "after=" + strconv.FormatUint(c.rseq, 10)
	if c.repoch != "" {
		q += "&epoch=" + url.QueryEscape(c.repoch)
	}
	if u.RawQuery != "" {
		q = u.RawQuery + "&" + q
	}
	u.RawQuery = q
	return u.String()
}

// run reads each connection in turn, queueing its events for deliver, and
// reconnects until the client stops.
func (c *Client) run(cn *conn) {
	defer c.finish()
	for {
		err := c.serve(cn)
		if c.ctx.Err() != nil {
			return
		}
		immediate := cn.resuming.Load()
		if immediate {
			c.log.Debug("fanout/client: resuming after a full buffer")
		} else if terminal(err) {
			err = stopped(err)
			c.log.Error(err.Error())
			c.fail(err)
			return
		} else {
			c.log.Warn("fanout/client: connection lost", "err", err)
		}
		if cn = c.reconnect(immediate); cn == nil {
			return
		}
	}
}

// reconnect dials with backoff until a connection is welcomed, the client
// is closed, or the server refuses it for good (then it returns nil). An
// immediate reconnect skips the first wait.
func (c *Client) reconnect(immediate bool) *conn {
	for attempt := 0; ; attempt++ {
		if attempt > 0 || !immediate {
			t := time.NewTimer(c.backoff.delay(attempt, rand.Float64()))
			select {
			case <-c.ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		cn, err := c.connect(c.ctx)
		if err == nil {
			c.reconnects.Add(1)
			return cn
		}
		if c.ctx.Err() != nil {
			return nil
		}
		if terminal(err) {
			c.log.Error("fanout/client: stopped", "err", err)
			c.fail(err) // a *HandshakeError, as Dial would return it
			return nil
		}
		c.log.Warn("fanout/client: reconnect failed", "attempt", attempt+1, "err", err)
		c.failover()
	}
}

// failover moves the following connection attempts to the next URL, if
// WithFailover gave several.
func (c *Client) failover() {
	if len(c.bases) > 1 {
		c.cur = (c.cur + 1) % len(c.bases)
		c.failovers.Add(1)
	}
}

// fail records why the client stops, unless something already did.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// finish runs when the run goroutine exits: it fails the publishes still
// waiting, lets deliver hand over what was already received (unless the
// client was closed), and announces the stop.
func (c *Client) finish() {
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	err := c.err
	c.stopped = true
	c.inputDone = true
	pubs := c.pubs
	c.pubs = nil
	c.pending.Init()
	c.mu.Unlock()
	for _, p := range pubs {
		p.result <- result{err: err}
	}
	kick(c.qKick)
	<-c.deliverDone
	c.cancel()
	close(c.done)
}

// Close sends a normal close (1000) to the server, stops reconnecting, fails
// pending publishes with ErrClosed, drops events not yet delivered, closes
// the Events channel and returns once every goroutine of the client has
// exited. It waits for a running handler to return (so a handler must not
// call it), and for the server to answer the close for at most a few
// seconds. Calling it again, or after the client stopped, does nothing.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	c.cancel()
	<-c.done
	return nil
}

// Done is closed when the client has stopped: after Close, or after a
// terminal error once the events received before it have been delivered.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err reports why the client stopped: ErrClosed after Close, a
// *HandshakeError for a refused reconnect, or, when the server closed the
// connection with a code that stops the client (1000, 1008, 1009 and 4000,
// and the WebSocket protocol errors 1002, 1003 and 1007; the client
// reconnects after any other), an error wrapping a *fanout.CloseError with
// that code and reason: fanout.CloseCodeOf(err) returns the code, as it
// does on the server. It is nil while the client runs.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Events returns the channel events are delivered on when no handler was
// set; it is nil otherwise. It is unbuffered: an event counts as processed
// once it has been received. The channel is closed when the client stops.
func (c *Client) Events() <-chan Event { return c.events }

// Position returns the seq and epoch of the last processed event (or of
// the head a reset moved to): what a later client can resume from with
// WithStartAfter. Before any event it is where the client started: the
// head it was welcomed with, or the WithStartAfter position.
//
// It moves only once an event is processed, so inside the handler for
// event n it still returns the position before n (n-1, or the head of a
// reset just before it), and inside the WithOnReset function it still
// returns the position from before the reset, in the old epoch; after
// that function returns it is the head and the new epoch. With the Events
// channel an event counts as processed once received, but Position may
// show it a moment later. An application that stores its position with
// its state should therefore store Event.Seq and Event.Epoch (or the
// reset's head and epoch), not call Position.
func (c *Client) Position() (seq uint64, epoch string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.epoch
}

// Stats returns counters since Dial.
func (c *Client) Stats() Stats {
	return Stats{
		Reconnects:  c.reconnects.Load(),
		Resets:      c.resets.Load(),
		Duplicates:  c.duplicates.Load(),
		Resent:      c.resent.Load(),
		RateLimited: c.rateLimited.Load(),
		Snapshots:   c.snapshots.Load(),
		Unavailable: c.unavailable.Load(),
		Failovers:   c.failovers.Load(),
	}
}

// kick wakes whoever waits on ch without ever blocking.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
