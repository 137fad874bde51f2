package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// Config is one soak run.
type Config struct {
	Clients       int           // Go clients checked event by event
	Duration      time.Duration // chaos, then the stall benchmark
	Rate          int           // events a second, all publishers together
	ServerPubs    int           // goroutines publishing with Session.Publish
	ClientPubs    int           // clients that also publish with Client.Publish
	KillEvery     time.Duration // mean time between two injected faults
	HandlerStalls time.Duration // mean time between two handler stalls
	RawStallers   int           // connections that never read, during chaos
	AckLoss       float64       // share of client publishes whose ack is lost, during chaos
	WriteTimeout  time.Duration // the session's write timeout
	History       int           // the session's history window
	EventSize     int           // bytes of each event's data
	Presence      bool          // join and leave messages
	Restart       bool          // end with a restart into a new epoch
	Seed          uint64
}

// DefaultConfig is the full run: a thousand clients for a minute.
func DefaultConfig() Config {
	return Config{
		Clients:       1000,
		Duration:      60 * time.Second,
		Rate:          50,
		ServerPubs:    4,
		ClientPubs:    8,
		KillEvery:     20 * time.Millisecond,
		HandlerStalls: 100 * time.Millisecond,
		RawStallers:   4,
		AckLoss:       0.05,
		WriteTimeout:  time.Second,
		History:       10_000,
		EventSize:     200,
		Presence:      false,
		Restart:       true,
		Seed:          1,
	}
}

func (c Config) benchPhase() time.Duration { return min(c.Duration/6, 10*time.Second) }
func (c Config) chaosPhase() time.Duration { return c.Duration - 2*c.benchPhase() }

func (c Config) validate() error {
	switch {
	case c.Clients < 1 || c.ClientPubs > c.Clients:
		return errors.New("need at least one client, and no more client publishers than clients")
	case c.Rate < 1 || c.ServerPubs+c.ClientPubs < 1:
		return errors.New("need a positive rate and at least one publisher")
	case c.chaosPhase() <= 0:
		return errors.New("duration too short")
	case c.AckLoss < 0 || c.AckLoss > 1:
		return errors.New("ack loss must be between 0 and 1")
	case c.KillEvery <= 0 || c.HandlerStalls <= 0:
		return errors.New("fault intervals must be positive")
	}
	return nil
}

// Faults counts what was done to the connections.
type Faults struct {
	ServerTCPKills  uint64 // server side of a connection closed abruptly
	ClientTCPKills  uint64 // client side of a connection closed abruptly
	HostGoingAway   uint64 // Conn.Close(1001) by the host
	HostSlowClose   uint64 // Conn.Close(4001) by the host
	HandlerStalls   uint64 // a client's handler stalled 0.2-2 s
	AcksLost        uint64 // a client publish committed, then its connection closed before the ack
	StallerConnects uint64 // connections of clients that never read
}

func (f Faults) total() uint64 {
	return f.ServerTCPKills + f.ClientTCPKills + f.HostGoingAway + f.HostSlowClose + f.HandlerStalls + f.StallerConnects + f.AcksLost
}

// Bench is the delivery to the checked clients of the events published
// during one benchmark phase.
type Bench struct {
	Name          string
	Seconds       float64
	Clients       int
	Published     uint64
	Delivered     uint64 // of the events published during the phase, by the end of it
	P50, P99, Max time.Duration
	PeakHeap      uint64
	SlowCloses    uint64 // slow-consumer closes during the phase
	StalledCloses uint64 // times the connection that never reads was closed
	StalledSlow   uint64 // ... as a slow consumer (4001)
}

// coverage is the share of (events published × clients) delivered within
// the phase, in percent.
func (b Bench) coverage() float64 {
	if b.Published == 0 || b.Clients == 0 {
		return 0
	}
	return 100 * float64(b.Delivered) / float64(b.Published*uint64(b.Clients))
}

// Restart is the end of the run: the session is shut down and a new one,
// with a new epoch, serves the same address.
type Restart struct {
	Done             bool
	ClientsReset     int // clients told resumed:false, via their reset callback
	ResetAtNewHead   int // ... with the new session's head
	SilentGaps       int // clients that got an event of the new epoch without a reset
	ClientsAtNewHead int
}

// Result is everything a run measured and checked.
type Result struct {
	Config  Config
	Elapsed time.Duration
	LoadAvg string // the machine's load average when the run began, where known

	Head, Published, ServerPublished, ClientPublished uint64
	Delivered                                         uint64 // events processed by the checked clients
	ServerDelivered                                   uint64 // Stats.Delivered: event messages written

	Loss, Dups, Reorder, Corrupt uint64 // summed over clients; all must be 0
	MaxLoss, MaxDups, MaxReorder uint64 // worst single client
	ClientsAtHead                int
	ClientResets                 uint64 // resets seen by clients (main run)
	ClientReconnects             uint64
	ClientDuplicatesDropped      uint64 // duplicates the client dropped by seq, as it should

	PublishOK, PublishFailed uint64 // client publishes
	PublishRetried           uint64 // resent after a reconnect (client Stats.Resent)
	PublishValidated         uint64 // client publishes that reached the validation hook (dedup comes first)
	PublishAckLost           uint64 // committed, then the connection closed before the ack (injected)
	PublishDeduplicated      uint64 // of those, retried and answered with the original seq, appended once
	PublishMisplaced         uint64 // a publish not at the seq its ack gave
	PublishTwice             uint64 // a publish appended more than once
	PublishMissing           uint64 // an acked publish not in the log
	Unaccounted              uint64 // log events no publisher accounts for

	ResumesReplayed, ResumesReset, SlowConsumerCloses uint64
	ClosesByCode                                      map[int]uint64

	Faults     Faults
	PeakHeap   uint64
	PeakGorout int

	Bench   []Bench
	Restart Restart

	Failures []string
}

// OK reports whether every check passed.
func (r *Result) OK() bool { return len(r.Failures) == 0 }

func (r *Result) failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// run is the state of one soak run.
type run struct {
	cfg Config
	log io.Writer
	res *Result

	sess    atomic.Pointer[fanout.Session]
	opts    []fanout.Option
	srvSet  *connSet // server side of the checked clients' connections
	cliSet  *connSet // client side
	hc      *http.Client
	tr      *http.Transport
	wsURL   string
	obsURL  string
	servers []*http.Server
	addrs   [2]string // main and observer listeners

	clients  []*client.Client
	recs     []*recorder
	observer *client.Client
	obs      *recorder

	delivered atomic.Uint64
	latency   atomic.Pointer[hist]

	pubMu       sync.Mutex
	pubSeqs     map[string]uint64 // acked publishes (server and client): key -> seq
	pubFailed   uint64
	serverCount uint64
	clientCount uint64

	recvMu   sync.Mutex
	received map[string]int  // client publishes as they reached the validation hook
	ackLost  map[string]bool // client publishes whose ack was lost after commit
	ackLoss  *rand.Rand

	closeMu sync.Mutex
	closes  map[int]uint64
	leaves  sync.Map // remote address -> chan struct{}, closed when it leaves

	faults struct {
		serverTCP, clientTCP, goingAway, slowClose, stalls, stallers, ackLost atomic.Uint64
	}
	chaosOn    atomic.Bool
	peakHeap   atomic.Uint64
	phaseHeap  atomic.Uint64
	peakGorout atomic.Int64
}

// Run performs one soak run and checks it. The error is for runs that could
// not be carried out; failed checks are in Result.Failures.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	r := &run{
		cfg:      cfg,
		log:      log,
		res:      &Result{Config: cfg, ClosesByCode: map[int]uint64{}, LoadAvg: loadAverage()},
		srvSet:   newConnSet(),
		cliSet:   newConnSet(),
		pubSeqs:  make(map[string]uint64),
		received: make(map[string]int),
		ackLost:  make(map[string]bool),
		closes:   make(map[int]uint64),
		ackLoss:  rand.New(rand.NewPCG(cfg.Seed, 3)),
	}
	r.latency.Store(off)
	r.hc, r.tr = trackingClient(r.cliSet, 16<<10)
	defer r.tr.CloseIdleConnections()

	stopSampler := r.sample()
	defer stopSampler()
	if err := r.serve(); err != nil {
		return nil, err
	}
	defer r.stopServers()
	defer func() {
		if s := r.sess.Load(); s != nil {
			_ = s.Close()
		}
	}()
	if err := r.connect(ctx); err != nil {
		r.closeClients()
		return nil, err
	}

	r.logf("chaos: %d clients, %d events/s, a fault every %v, for %v", cfg.Clients, cfg.Rate, cfg.KillEvery, cfg.chaosPhase())
	pubCtx, stopPubs := context.WithCancel(ctx)
	var pubs sync.WaitGroup
	r.publishers(pubCtx, &pubs)

	r.chaosOn.Store(true)
	chaosCtx, stopChaos := context.WithCancel(ctx)
	var chaos sync.WaitGroup
	r.chaos(chaosCtx, &chaos)
	sleepCtx(ctx, cfg.chaosPhase())
	stopChaos()
	r.chaosOn.Store(false)
	chaos.Wait()

	// Let every client catch up with what it missed, then measure delivery
	// without faults, and with one client that never reads.
	r.waitAtLeast(ctx, r.sess.Load().Stats().Head, 60*time.Second)
	r.res.Bench = r.bench(ctx)

	stopPubs()
	pubs.Wait()
	head := r.sess.Load().Stats().Head
	if !r.waitAtLeast(ctx, head, 60*time.Second) {
		r.res.failf("not every client reached head %d within 60 s", head)
	}
	r.verify(head)

	if cfg.Restart && ctx.Err() == nil {
		r.restart(ctx)
	}
	r.closeClients()
	r.res.Elapsed = time.Since(start)
	r.res.PeakHeap = r.peakHeap.Load()
	r.res.PeakGorout = int(r.peakGorout.Load())
	if ctx.Err() != nil {
		r.res.failf("interrupted: %v", ctx.Err())
	}
	return r.res, nil
}

func (r *run) logf(format string, args ...any) {
	if r.log != nil {
		fmt.Fprintf(r.log, "soak: "+format+"\n", args...)
	}
}

// newSession creates a session with the run's options.
func (r *run) newSession() (*fanout.Session, error) {
	if r.opts == nil {
		r.opts = []fanout.Option{
			fanout.WithAuthenticate(func(req *http.Request) (fanout.Identity, error) {
				u := req.Header.Get("X-User")
				if u == "" {
					return fanout.Identity{}, errors.New("no user")
				}
				return fanout.Identity{User: u}, nil
			}),
			fanout.WithHistory(r.cfg.History),
			fanout.WithWriteTimeout(r.cfg.WriteTimeout),
			fanout.WithHeartbeat(2*time.Second, 2*time.Second),
			fanout.WithMaxConnections(r.cfg.Clients + r.cfg.RawStallers + 64),
			fanout.WithPresence(r.cfg.Presence),
			fanout.WithValidate(func(_ context.Context, c *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
				key := payloadKey(data)
				r.recvMu.Lock()
				defer r.recvMu.Unlock()
				r.received[key]++
				if r.chaosOn.Load() && r.ackLoss.Float64() < r.cfg.AckLoss {
					// The publish is committed after this returns, but the
					// connection closes before its ack is sent: the client
					// must resend it and get the original seq back.
					_ = c.Close(fanout.CloseGoingAway, "soak fault: ack lost")
					r.ackLost[key] = true
					r.faults.ackLost.Add(1)
				}
				return data, nil
			}),
			fanout.WithOnLeave(func(c *fanout.Conn) {
				code := int(fanout.CloseCodeOf(c.CloseReason()))
				r.closeMu.Lock()
				r.closes[code]++
				r.closeMu.Unlock()
				if ch, ok := r.leaves.LoadAndDelete(c.RemoteAddr()); ok {
					ch.(chan int) <- code
				}
			}),
		}
	}
	return fanout.NewSession("soak", r.opts...)
}

// serve starts a session behind two listeners: one for the checked
// clients, whose connections faults are injected into, and one for the
// observer, which no fault touches. After a restart it listens on the same
// addresses again.
func (r *run) serve() error {
	s, err := r.newSession()
	if err != nil {
		return err
	}
	return r.listen(s)
}

func (r *run) listen(s *fanout.Session) error {
	r.sess.Store(s)
	for i := range r.addrs {
		addr := r.addrs[i]
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		r.addrs[i] = ln.Addr().String()
		if i == 0 {
			ln = &trackingListener{Listener: ln, set: r.srvSet, sendBuf: 8 << 10}
		}
		srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
		r.servers = append(r.servers, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	r.wsURL = "ws://" + r.addrs[0] + "/"
	r.obsURL = "ws://" + r.addrs[1] + "/"
	return nil
}

func (r *run) stopServers() {
	for _, srv := range r.servers {
		_ = srv.Close()
	}
	r.servers = nil
}

// connect dials the observer and the checked clients, a few at a time.
func (r *run) connect(ctx context.Context) error {
	r.obs = &recorder{r: r, keep: true}
	obsHC, obsTr := trackingClient(nil, 0)
	defer obsTr.CloseIdleConnections()
	var err error
	r.observer, err = r.dial(ctx, r.obsURL, "observer", r.obs, obsHC)
	if err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	r.recs = make([]*recorder, r.cfg.Clients)
	r.clients = make([]*client.Client, r.cfg.Clients)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range r.cfg.Clients {
		r.recs[i] = &recorder{r: r}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := r.dial(ctx, r.wsURL, fmt.Sprintf("c%d", i), r.recs[i], r.hc)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = fmt.Errorf("client %d: %w", i, err)
			}
			r.clients[i] = c
		})
	}
	wg.Wait()
	r.logf("connected %d clients and the observer", r.cfg.Clients)
	return first
}

func (r *run) dial(ctx context.Context, url, user string, rec *recorder, hc *http.Client) (*client.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return client.Dial(dctx, url,
		client.WithHeader(http.Header{"X-User": {user}}),
		client.WithHTTPClient(hc),
		client.WithHandler(rec.handle),
		client.WithOnReset(rec.reset),
		client.WithStartAfter(0, ""),
		client.WithBackoff(10*time.Millisecond, 500*time.Millisecond),
		client.WithTimeout(5*time.Second),
	)
}

func (r *run) closeClients() {
	var wg sync.WaitGroup
	for _, c := range r.clients {
		if c != nil {
			wg.Go(func() { _ = c.Close() })
		}
	}
	if r.observer != nil {
		wg.Go(func() { _ = r.observer.Close() })
	}
	wg.Wait()
	r.clients, r.observer = nil, nil
}

// publishers start the server-side and client-side publishers, each at its
// share of the rate.
func (r *run) publishers(ctx context.Context, wg *sync.WaitGroup) {
	n := r.cfg.ServerPubs + r.cfg.ClientPubs
	interval := time.Duration(float64(time.Second) * float64(n) / float64(r.cfg.Rate))
	for p := range r.cfg.ServerPubs {
		name := fmt.Sprintf("s%d", p)
		wg.Go(func() {
			pace(ctx, interval, func(i uint64) {
				data := makePayload(name, i, r.cfg.EventSize)
				seq, err := r.sess.Load().Publish(ctx, data)
				r.recordPublish(name, i, seq, err, true)
			})
		})
	}
	for p := range r.cfg.ClientPubs {
		name := fmt.Sprintf("c%d", p)
		c := r.clients[p]
		wg.Go(func() {
			pace(ctx, interval, func(i uint64) {
				data := makePayload(name, i, r.cfg.EventSize)
				// Not bound by ctx: a publish, once made, is waited for.
				seq, err := c.Publish(context.Background(), data)
				r.recordPublish(name, i, seq, err, false)
			})
		})
	}
}

func (r *run) recordPublish(pub string, i, seq uint64, err error, server bool) {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			r.pubFailed++
			if r.pubFailed <= 5 {
				r.logf("publish %s/%d failed: %v", pub, i, err)
			}
		}
		return
	}
	r.pubSeqs[fmt.Sprintf("%s/%d", pub, i)] = seq
	if server {
		r.serverCount++
	} else {
		r.clientCount++
	}
}

// pace calls f every interval, with jitter, until ctx ends.
func pace(ctx context.Context, interval time.Duration, f func(i uint64)) {
	next := time.Now()
	for i := uint64(0); ctx.Err() == nil; i++ {
		f(i)
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			sleepCtx(ctx, d)
		} else if d < -time.Second {
			next = time.Now() // fell far behind: do not burst to catch up
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// chaos injects faults until ctx ends: abrupt TCP closes on either side,
// host closes with 1001 and 4001, handler stalls, and clients that never
// read.
func (r *run) chaos(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		rnd := rand.New(rand.NewPCG(r.cfg.Seed, 1))
		// Closing a socket or taking the session's lock can take a while on
		// a loaded machine: faults run on their own goroutines, a few at a
		// time, so that their number follows the clock.
		sem := make(chan struct{}, 8)
		var faults sync.WaitGroup
		every(ctx, r.cfg.KillEvery, func() {
			k, seed := rnd.IntN(20), rnd.Uint64()
			sem <- struct{}{}
			faults.Go(func() {
				defer func() { <-sem }()
				r.fault(k, rand.New(rand.NewPCG(seed, 4)))
			})
		})
		faults.Wait()
	})
	wg.Go(func() {
		rnd := rand.New(rand.NewPCG(r.cfg.Seed, 2))
		every(ctx, r.cfg.HandlerStalls, func() {
			d := 200*time.Millisecond + time.Duration(rnd.Int64N(int64(1800*time.Millisecond)))
			r.recs[rnd.IntN(len(r.recs))].stall.Store(int64(d))
			r.faults.stalls.Add(1)
		})
	})
	for range r.cfg.RawStallers {
		wg.Go(func() { r.neverReads(ctx, nil) })
	}
}

// every calls f once per interval on average until ctx ends. A loaded
// machine may wake it late; it then catches up, so that the number of calls
// follows the clock rather than the scheduler.
func every(ctx context.Context, interval time.Duration, f func()) {
	start := time.Now()
	var done int64
	for ctx.Err() == nil {
		sleepCtx(ctx, interval)
		due := int64(time.Since(start) / interval)
		for ; done < due && ctx.Err() == nil; done++ {
			f()
		}
	}
}

// fault injects one fault into a random checked client's connection: an
// abrupt TCP close of the server's or the client's side, or the host
// closing it with 1001 or 4001.
func (r *run) fault(k int, rnd *rand.Rand) {
	switch {
	case k < 7:
		if r.srvSet.killRandom(rnd) {
			r.faults.serverTCP.Add(1)
		}
	case k < 14:
		if r.cliSet.killRandom(rnd) {
			r.faults.clientTCP.Add(1)
		}
	default:
		code, n := fanout.CloseGoingAway, &r.faults.goingAway
		if k >= 17 {
			code, n = fanout.CloseSlowConsumer, &r.faults.slowClose
		}
		if c := r.randomChecked(rnd); c != nil && c.Close(code, "soak fault") == nil {
			n.Add(1)
		}
	}
}

// randomChecked returns the server side of a random checked client's
// connection, if any.
func (r *run) randomChecked(rnd *rand.Rand) *fanout.Conn {
	conns := r.sess.Load().Conns()
	rnd.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	for _, c := range conns {
		if u := c.Identity().User; u != "observer" && u != "staller" {
			return c
		}
	}
	return nil
}

// neverReads keeps a connection open that never reads, with a small
// receive buffer, reconnecting each time the server closes it, until ctx
// ends.
func (r *run) neverReads(ctx context.Context, closes *sync.Map) {
	var mu sync.Mutex
	var last net.Conn
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4 << 10)
		}
		mu.Lock()
		last = c
		mu.Unlock()
		return c, nil
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ws, _, err := websocket.Dial(dctx, r.wsURL, &websocket.DialOptions{
			HTTPClient: hc, HTTPHeader: http.Header{"X-User": {"staller"}},
		})
		cancel()
		if err != nil {
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		r.faults.stallers.Add(1)
		mu.Lock()
		addr := last.LocalAddr().String()
		mu.Unlock()
		left := make(chan int, 1)
		r.leaves.Store(addr, left)
		// Never read, but stay alive: only the reading is at fault.
		code := r.awaitLeave(ctx, addr, left, func() {
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`))
		})
		r.leaves.Delete(addr)
		if closes != nil && code != 0 {
			closes.Store(addr, code)
		}
		_ = ws.CloseNow()
	}
}

// awaitLeave waits until the connection from addr has left the session,
// calling tick every 500 ms meanwhile, and returns its close code (0 if
// unknown).
func (r *run) awaitLeave(ctx context.Context, addr string, left <-chan int, tick func()) int {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case code := <-left:
			return code
		case <-ctx.Done():
			return 0
		case <-t.C:
			tick()
			if i%4 != 3 {
				continue
			}
			// It may have left before we were listening.
			gone := true
			for _, c := range r.sess.Load().Conns() {
				if c.RemoteAddr() == addr {
					gone = false
				}
			}
			if gone {
				return 0
			}
		}
	}
}

// waitAtLeast waits until every client and the observer processed head.
func (r *run) waitAtLeast(ctx context.Context, head uint64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		behind := r.obs.pos.Load() < head
		for _, rc := range r.recs {
			if rc.pos.Load() < head {
				behind = true
				break
			}
		}
		if !behind {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// benchRounds is how many times the two benchmark phases alternate. One:
// a connection that never reads needs a few seconds to fill its socket
// buffers and block the server's writes, so its phase must be long.
const benchRounds = 1

// bench measures delivery to the checked clients without and with
// connections that never read, alternating the two phases. Each phase
// counts only the events published while it runs.
func (r *run) bench(ctx context.Context) []Bench {
	names := []string{
		fmt.Sprintf("%d clients, none stalled", r.cfg.Clients),
		fmt.Sprintf("%d clients and one that never reads", r.cfg.Clients),
	}
	out := make([]Bench, len(names))
	hists := make([]*hist, len(names))
	for i := range names {
		hists[i] = new(hist)
		out[i] = Bench{Name: names[i], Clients: r.cfg.Clients}
	}
	d := r.cfg.benchPhase() / benchRounds
	for round := 0; round < benchRounds && ctx.Err() == nil; round++ {
		for stalled := range names {
			b, h := &out[stalled], hists[stalled]
			start := time.Now()
			h.since.Store(start.UnixNano())
			r.latency.Store(h)
			r.phaseHeap.Store(0)
			before := r.sess.Load().Stats()
			pctx, cancel := context.WithTimeout(ctx, d)
			var wg sync.WaitGroup
			var closes sync.Map
			for range stalled {
				wg.Go(func() { r.neverReads(pctx, &closes) })
			}
			<-pctx.Done()
			cancel()
			wg.Wait()
			r.latency.Store(off)
			after := r.sess.Load().Stats()
			b.Seconds += time.Since(start).Seconds()
			b.Published += after.Published - before.Published
			b.PeakHeap = max(b.PeakHeap, r.phaseHeap.Load())
			b.SlowCloses += after.SlowConsumerCloses - before.SlowConsumerCloses
			closes.Range(func(_, code any) bool {
				b.StalledCloses++
				if code.(int) == int(fanout.CloseSlowConsumer) {
					b.StalledSlow++
				}
				return true
			})
		}
	}
	for i, h := range hists {
		b := &out[i]
		b.Delivered, b.P50, b.P99, b.Max = h.n.Load(), h.quantile(0.50), h.quantile(0.99), time.Duration(h.max.Load())
		r.logf("%s: %.0f events/s delivered (%.1f%%), p50 %v, p99 %v, peak heap %.1f MiB, slow-consumer closes %d",
			b.Name, float64(b.Delivered)/b.Seconds, b.coverage(), b.P50, b.P99, float64(b.PeakHeap)/(1<<20), b.SlowCloses)
	}
	return out
}

// off is the histogram in place outside the benchmark: it counts nothing.
var off = func() *hist {
	h := new(hist)
	h.since.Store(math.MaxInt64)
	return h
}()

// sample records the peak heap and goroutine count every 100 ms.
func (r *run) sample() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			storeMax(&r.peakHeap, ms.HeapAlloc)
			storeMax(&r.phaseHeap, ms.HeapAlloc)
			if g := int64(runtime.NumGoroutine()); g > r.peakGorout.Load() {
				r.peakGorout.Store(g)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func storeMax(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// verify checks the run against the guarantees.
func (r *run) verify(head uint64) {
	res := r.res
	s := r.sess.Load()
	st := s.Stats()
	res.Head, res.Published, res.ServerDelivered = head, st.Published, st.Delivered
	res.ResumesReplayed, res.ResumesReset, res.SlowConsumerCloses = st.ResumesReplayed, st.ResumesReset, st.SlowConsumerCloses

	obs := r.obs.snapshot()
	if obs.last != head || obs.loss+obs.dups+obs.reorder != 0 || len(obs.resets) != 0 {
		res.failf("observer: at %d of %d, loss %d, dups %d, reorder %d, resets %d", obs.last, head, obs.loss, obs.dups, obs.reorder, len(obs.resets))
	}
	r.obs.mu.Lock()
	hashes, keys := r.obs.hashes, r.obs.keys
	r.obs.mu.Unlock()
	prefix := make([]uint64, len(hashes)+1)
	for i, h := range hashes {
		prefix[i+1] = prefix[i] + h
	}
	spanSum := func(from, to uint64) uint64 {
		to = min(to, uint64(len(hashes)))
		if from > to || from == 0 {
			return 0
		}
		return prefix[to] - prefix[from-1]
	}

	for i, rc := range r.recs {
		sn := rc.snapshot()
		res.Delivered += sn.events
		res.Loss += sn.loss
		res.Dups += sn.dups
		res.Reorder += sn.reorder
		res.MaxLoss, res.MaxDups, res.MaxReorder = max(res.MaxLoss, sn.loss), max(res.MaxDups, sn.dups), max(res.MaxReorder, sn.reorder)
		want := spanSum(1, head)
		for _, sp := range sn.resets {
			want -= spanSum(sp.from, sp.to)
		}
		if sn.loss == 0 && sn.sum != want {
			res.Corrupt++
		}
		if c := r.clients[i]; c != nil {
			seq, epoch := c.Position()
			if sn.last == head && seq == head && epoch == st.Epoch {
				res.ClientsAtHead++
			}
			cs := c.Stats()
			res.ClientResets += cs.Resets
			res.ClientReconnects += cs.Reconnects
			res.ClientDuplicatesDropped += cs.Duplicates
			res.PublishRetried += cs.Resent
		}
	}
	if res.Loss+res.Dups+res.Reorder+res.Corrupt != 0 {
		res.failf("loss %d, duplicates %d, reorders %d, corrupt streams %d", res.Loss, res.Dups, res.Reorder, res.Corrupt)
	}
	if res.ClientsAtHead != len(r.recs) {
		res.failf("%d of %d clients ended at head %d", res.ClientsAtHead, len(r.recs), head)
	}
	if res.ClientResets != 0 {
		res.failf("%d resets during the run: a resume fell out of the history window", res.ClientResets)
	}

	// Exactly-once publishing: each acked publish is in the log once, at
	// the seq its ack gave; nothing else is.
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	res.ServerPublished, res.ClientPublished = r.serverCount, r.clientCount
	res.PublishOK, res.PublishFailed = r.clientCount, r.pubFailed
	inLog := make(map[string]int, len(keys))
	for _, k := range keys {
		inLog[k]++
	}
	for k, n := range inLog {
		if n > 1 {
			res.PublishTwice += uint64(n - 1)
		}
		if _, ok := r.pubSeqs[k]; !ok {
			res.Unaccounted += uint64(n)
		}
	}
	for k, seq := range r.pubSeqs {
		switch {
		case inLog[k] == 0:
			res.PublishMissing++
		case seq == 0 || seq > uint64(len(keys)) || keys[seq-1] != k:
			res.PublishMisplaced++
		}
	}
	r.recvMu.Lock()
	for _, n := range r.received {
		res.PublishValidated += uint64(n)
	}
	for k := range r.ackLost {
		res.PublishAckLost++
		if seq, ok := r.pubSeqs[k]; ok && inLog[k] == 1 && seq <= uint64(len(keys)) && keys[seq-1] == k {
			res.PublishDeduplicated++
		}
	}
	r.recvMu.Unlock()
	if res.PublishDeduplicated != res.PublishAckLost {
		res.failf("%d of %d publishes whose ack was lost were answered with their original seq", res.PublishDeduplicated, res.PublishAckLost)
	}
	if res.PublishTwice+res.PublishMissing+res.PublishMisplaced+res.Unaccounted+res.PublishFailed != 0 {
		res.failf("publishes: %d twice, %d missing, %d misplaced, %d unaccounted, %d failed",
			res.PublishTwice, res.PublishMissing, res.PublishMisplaced, res.Unaccounted, res.PublishFailed)
	}
	if uint64(len(keys)) != head || r.serverCount+r.clientCount != head {
		res.failf("the log holds %d events, the publishers account for %d, head is %d", len(keys), r.serverCount+r.clientCount, head)
	}

	res.Faults = Faults{
		ServerTCPKills: r.faults.serverTCP.Load(), ClientTCPKills: r.faults.clientTCP.Load(),
		HostGoingAway: r.faults.goingAway.Load(), HostSlowClose: r.faults.slowClose.Load(),
		HandlerStalls: r.faults.stalls.Load(), StallerConnects: r.faults.stallers.Load(), AcksLost: r.faults.ackLost.Load(),
	}
	r.closeMu.Lock()
	for code, n := range r.closes {
		res.ClosesByCode[code] = n
	}
	r.closeMu.Unlock()
}

// restart shuts the session down and serves a new one, with a new epoch
// and a few events already, on the same addresses: every client must be
// told resumed:false with the new head, never handed the new epoch's
// events as if they followed its old position.
func (r *run) restart(ctx context.Context) {
	const preloaded = 3
	old := r.sess.Load()
	for _, rc := range append([]*recorder{r.obs}, r.recs...) {
		rc.newEpoch()
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := old.Shutdown(sctx)
	cancel()
	if err != nil {
		r.res.failf("shutdown: %v", err)
	}
	r.stopServers()
	s, err := r.newSession()
	if err != nil {
		r.res.failf("restart: %v", err)
		return
	}
	for i := range preloaded { // published before anyone can be back
		if _, err := s.Publish(ctx, makePayload("restart", uint64(i), r.cfg.EventSize)); err != nil {
			r.res.failf("restart publish: %v", err)
		}
	}
	if err := r.listen(s); err != nil {
		_ = s.Close()
		r.res.failf("restart: %v", err)
		return
	}
	r.logf("restarted: epoch %s -> %s, head %d", old.Epoch(), s.Epoch(), preloaded)
	deadline := time.Now().Add(60 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) && s.Stats().Connections < len(r.recs)+1 {
		time.Sleep(20 * time.Millisecond)
	}
	seq, err := s.Publish(ctx, makePayload("restart", preloaded, r.cfg.EventSize))
	if err != nil {
		r.res.failf("restart publish: %v", err)
		return
	}
	r.waitAtLeast(ctx, seq, 30*time.Second)
	rs := &r.res.Restart
	rs.Done = true
	for _, rc := range r.recs {
		sn := rc.snapshot()
		if len(sn.resets) > 0 {
			rs.ClientsReset++
			if sn.resets[len(sn.resets)-1].to == preloaded {
				rs.ResetAtNewHead++
			}
		} else if sn.events > 0 {
			rs.SilentGaps++
		}
		if sn.last == seq && sn.loss+sn.dups+sn.reorder == 0 {
			rs.ClientsAtNewHead++
		}
	}
	if rs.ClientsReset != len(r.recs) || rs.SilentGaps != 0 || rs.ClientsAtNewHead != len(r.recs) {
		r.res.failf("restart: %d of %d clients reset explicitly, %d silent gaps, %d at the new head",
			rs.ClientsReset, len(r.recs), rs.SilentGaps, rs.ClientsAtNewHead)
	}
	r.logf("restart: %d of %d clients reset explicitly (%d at the new head %d), %d silent gaps",
		rs.ClientsReset, len(r.recs), rs.ResetAtNewHead, preloaded, rs.SilentGaps)
	sctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = s.Shutdown(sctx)
}

// loadAverage returns the 1-minute load average on systems that publish
// it in /proc, else "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// sortedCodes returns the close codes seen, in order.
func sortedCodes(m map[int]uint64) []int {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	return codes
}
