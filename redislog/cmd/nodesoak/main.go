// Command nodesoak is the multi-node soak run: several nodes (sessions on
// one log, each behind its own HTTP server) on a redis-server of its own,
// a thousand Go clients that move between the nodes at random, client
// publishers, and faults of the nodes and of Redis while it runs. At the
// end it checks every client, event by event, against the log: nothing
// lost, duplicated or reordered, every acked publish in the log once at
// its acked seq, every client at the head.
//
//	cd redislog && go run ./cmd/nodesoak -nodes 3 -clients 1000 -duration 60s
//
// -o writes the results as a Markdown section (scripts/reliability.sh
// puts it in RELIABILITY.md). It exits non-zero when a check fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/redislog"
)

var (
	nodesN     = flag.Int("nodes", 3, "nodes")
	clientsN   = flag.Int("clients", 1000, "clients")
	pubsN      = flag.Int("publishers", 8, "publishing clients")
	rate       = flag.Int("rate", 50, "publishes per second, all publishers together")
	duration   = flag.Duration("duration", 60*time.Second, "how long publishers, moves and faults run")
	moveRate   = flag.Int("moves", 20, "client moves to another node per second")
	faultEvery = flag.Duration("fault-every", 3*time.Second, "mean time between faults")
	redisBin   = flag.String("redis-server", "/usr/bin/redis-server", "redis-server binary")
	out        = flag.String("o", "", "write the results as Markdown to this file")
)

func main() {
	flag.Parse()
	r, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodesoak:", err)
		os.Exit(2)
	}
	r.print(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err == nil {
			r.markdown(f)
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nodesoak:", err)
			os.Exit(2)
		}
	}
	if !r.ok() {
		os.Exit(1)
	}
}

// redisProc is the run's own redis-server, with the append-only file
// fsynced on every write, so that a SIGKILL loses nothing acked.
type redisProc struct {
	addr, dir string
	port      int
	cmd       *exec.Cmd
}

func (p *redisProc) start() error {
	p.cmd = exec.Command(*redisBin, "--bind", "127.0.0.1", "--port", strconv.Itoa(p.port), "--dir", p.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", "")
	if err := p.cmd.Start(); err != nil {
		return err
	}
	for range 500 {
		if c, err := net.Dial("tcp", p.addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("redis-server did not start")
}

func (p *redisProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func (p *redisProc) do(args ...string) error {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.addr}, DisableCache: true})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args...).Build()).Error()
}

// node is one server process's worth, restartable on its address.
type node struct {
	addr   string
	mu     sync.Mutex
	rc     rueidis.Client
	store  *redislog.Store
	sess   *fanout.Session
	srv    *http.Server
	served chan struct{}
}

func (n *node) url() string { return "ws://" + n.addr + "/" }

func (n *node) start(redisAddr string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ln, err := net.Listen("tcp", n.addr)
	if err != nil {
		return err
	}
	n.addr = ln.Addr().String()
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	if err != nil {
		ln.Close()
		return err
	}
	st, err := redislog.New(rc, redislog.Options{ProbeInterval: 500 * time.Millisecond})
	if err != nil {
		rc.Close()
		ln.Close()
		return err
	}
	sess, err := fanout.NewSession("soak", fanout.WithLog(st.Log("soak")), fanout.WithPresence(false),
		fanout.WithPublishRate(1000, 1000), fanout.WithHeartbeat(2*time.Second, 5*time.Second))
	if err != nil {
		st.Close()
		rc.Close()
		ln.Close()
		return err
	}
	n.rc, n.store, n.sess = rc, st, sess
	n.srv = &http.Server{Handler: sess}
	n.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		_ = srv.Serve(ln)
		close(done)
	}(n.srv, n.served)
	return nil
}

// stop ends the node as a crash would for its clients: connections cut,
// no close frame.
func (n *node) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	_ = n.srv.Close()
	<-n.served
	_ = n.sess.Close()
	n.store.Close()
	n.rc.Close()
	n.srv = nil
}

// checker is one client's view, kept across its moves.
type checker struct {
	mu            sync.Mutex
	seq           uint64
	epoch         string
	first         uint64 // first seq received in the final epoch's run
	events        uint64
	gaps, reorder uint64
	silentEpoch   uint64
	resets        uint64
	resetPending  bool
	sum           uint64 // of eventHash over the events of the current epoch
}

func eventHash(seq uint64, data []byte) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d:", seq)
	h.Write(data)
	return h.Sum64()
}

func (c *checker) handle(ev client.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	switch {
	case ev.Epoch != c.epoch:
		if c.epoch != "" && !c.resetPending {
			c.silentEpoch++
		}
		c.epoch, c.first, c.sum = ev.Epoch, ev.Seq, 0
	case c.resetPending:
		c.first, c.sum = ev.Seq, 0
	case c.seq != 0 && ev.Seq > c.seq+1:
		c.gaps++
	case c.seq != 0 && ev.Seq <= c.seq:
		c.reorder++
	}
	if c.first == 0 {
		c.first = ev.Seq
	}
	c.resetPending = false
	c.seq = ev.Seq
	c.sum += eventHash(ev.Seq, ev.Data)
}

func (c *checker) reset(head uint64, epoch string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets++
	c.resetPending = true
	c.seq, c.epoch, c.first, c.sum = head, epoch, head+1, 0
}

func (c *checker) position() (uint64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.epoch
}

type results struct {
	nodes, clients, pubs, rate int
	duration, elapsed          time.Duration
	loadavg                    string
	epochs                     []string
	head                       uint64
	delivered                  uint64
	gaps, reorder, silent      uint64
	resets                     uint64
	atHead                     int
	contentBad                 int
	acked, failed              uint64
	twice, missing, misplace   int
	moves, failovers           uint64
	faults                     map[string]int
	peakHeap                   uint64
	peakGoroutines             int
	failures                   []string
}

func (r *results) ok() bool { return len(r.failures) == 0 }

func run() (*results, error) {
	start := time.Now()
	r := &results{nodes: *nodesN, clients: *clientsN, pubs: *pubsN, rate: *rate, duration: *duration, faults: map[string]int{}}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.loadavg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "nodesoak")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rp := &redisProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir}
	if err := rp.start(); err != nil {
		return nil, err
	}
	defer rp.kill()

	nodes := make([]*node, *nodesN)
	for i := range nodes {
		nodes[i] = &node{addr: "127.0.0.1:0"}
		if err := nodes[i].start(rp.addr); err != nil {
			return nil, err
		}
		defer nodes[i].stop()
	}
	for _, n := range nodes {
		for n.sess.Epoch() == "" {
			time.Sleep(5 * time.Millisecond)
		}
	}
	urls := func(first int) (string, []string) {
		var rest []string
		for i := 1; i < len(nodes); i++ {
			rest = append(rest, nodes[(first+i)%len(nodes)].url())
		}
		return nodes[first].url(), rest
	}
	dialOn := func(ctx context.Context, at int, ck *checker, opts ...client.Option) (*client.Client, error) {
		u, rest := urls(at)
		return client.Dial(ctx, u, append([]client.Option{
			client.WithHandler(ck.handle), client.WithOnReset(ck.reset), client.WithFailover(rest...),
			client.WithBackoff(20*time.Millisecond, time.Second), client.WithTimeout(5 * time.Second),
		}, opts...)...)
	}

	// Clients, spread over the nodes.
	checkers := make([]*checker, *clientsN)
	conns := make([]atomic.Pointer[client.Client], *clientsN)
	var failovers atomic.Uint64
	for i := range checkers {
		checkers[i] = &checker{}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := dialOn(ctx, i%len(nodes), checkers[i])
		cancel()
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		conns[i].Store(c)
	}
	closeAll := func() {
		for i := range conns {
			if c := conns[i].Load(); c != nil {
				failovers.Add(c.Stats().Failovers)
				_ = c.Close()
			}
		}
	}
	defer closeAll()

	ctx, stop := context.WithTimeout(context.Background(), *duration)
	defer stop()
	var wg sync.WaitGroup
	var nodeMu sync.RWMutex // held for writing while a node restarts

	// Publishers: clients with failover, each publishing its own numbered
	// events; an acked publish is recorded with its seq.
	type ack struct {
		data string
		seq  uint64
	}
	acks := make([][]ack, *pubsN)
	var failed atomic.Uint64
	for p := range *pubsN {
		pc, err := dialOn(context.Background(), p%len(nodes), &checker{})
		if err != nil {
			return nil, err
		}
		defer pc.Close()
		wg.Go(func() {
			every := time.Duration(*pubsN) * time.Second / time.Duration(*rate)
			for i := 0; ctx.Err() == nil; i++ {
				data := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				seq, err := pc.Publish(ctx, []byte(data))
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				acks[p] = append(acks[p], ack{data, seq})
				select {
				case <-ctx.Done():
				case <-time.After(every):
				}
			}
		})
	}

	// Moves: a random client leaves its node and resumes on another.
	var moves atomic.Uint64
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(max(*moveRate, 1)))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			i := rand.IntN(len(conns))
			old := conns[i].Load()
			failovers.Add(old.Stats().Failovers)
			_ = old.Close()
			seq, epoch := checkers[i].position()
			nodeMu.RLock()
			dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			c, err := dialOn(dctx, rand.IntN(len(nodes)), checkers[i], client.WithStartAfter(seq, epoch))
			cancel()
			nodeMu.RUnlock()
			if err != nil {
				fmt.Fprintf(os.Stderr, "nodesoak: move of client %d: %v\n", i, err)
				conns[i].Store(nil)
				continue
			}
			conns[i].Store(c)
			moves.Add(1)
		}
	})

	// Faults, one at a time.
	faultNames := []string{"CLIENT KILL TYPE pubsub", "CLIENT KILL TYPE normal", "Redis SIGSTOP 1.5 s", "Redis SIGKILL, restart with AOF", "node crash, restart after 1 s"}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(*faultEvery/2 + rand.N(*faultEvery)):
			}
			k := rand.IntN(len(faultNames))
			var err error
			switch k {
			case 0:
				err = rp.do("CLIENT", "KILL", "TYPE", "pubsub")
			case 1:
				err = rp.do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
			case 2:
				_ = rp.cmd.Process.Signal(syscall.SIGSTOP)
				time.Sleep(1500 * time.Millisecond)
				_ = rp.cmd.Process.Signal(syscall.SIGCONT)
			case 3:
				rp.kill()
				time.Sleep(300 * time.Millisecond)
				err = rp.start()
			case 4:
				n := nodes[rand.IntN(len(nodes))]
				nodeMu.Lock()
				n.stop()
				time.Sleep(time.Second)
				err = n.start(rp.addr)
				nodeMu.Unlock()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "nodesoak: fault %s: %v\n", faultNames[k], err)
			}
			r.faults[faultNames[k]]++
		}
	})

	// Peak memory and goroutines, sampled.
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for ctx.Err() == nil {
			runtime.ReadMemStats(&ms)
			r.peakHeap = max(r.peakHeap, ms.HeapAlloc)
			r.peakGoroutines = max(r.peakGoroutines, runtime.NumGoroutine())
			time.Sleep(500 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-sampled

	// Settle: the log's head stops moving and every client reaches it.
	st, err := func() (*redislog.Store, error) {
		rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rp.addr}, DisableCache: true})
		if err != nil {
			return nil, err
		}
		s, err := redislog.New(rc, redislog.Options{})
		if err != nil {
			return nil, err
		}
		return s, nil
	}()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	lg := st.Log("soak")
	var epoch string
	var head uint64
	deadline := time.Now().Add(90 * time.Second)
	for {
		e, h, err := lg.Head(context.Background())
		if err == nil && e == epoch && h == head {
			at := 0
			for _, ck := range checkers {
				if s, ce := ck.position(); s == head && ce == epoch {
					at++
				}
			}
			r.atHead = at
			if at == len(checkers) || time.Now().After(deadline) {
				break
			}
		}
		if err == nil {
			epoch, head = e, h
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.head = head
	r.moves = moves.Load()
	r.failed = failed.Load()

	// The log, and the checks.
	var recs []fanout.Record
	for after := uint64(0); ; {
		batch, err := lg.Read(context.Background(), epoch, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("reading the log: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		recs = append(recs, batch...)
		after = batch[len(batch)-1].Seq
	}
	prefix := make([]uint64, len(recs)+1) // prefix[i]: sum of hashes of seqs 1..i
	bySeq := map[uint64]string{}
	count := map[string]int{}
	for i, rec := range recs {
		prefix[i+1] = prefix[i] + eventHash(rec.Seq, rec.Data)
		bySeq[rec.Seq] = string(rec.Data)
		count[string(rec.Data)]++
	}
	for _, c := range count {
		if c > 1 {
			r.twice++
		}
	}
	for _, as := range acks {
		for _, a := range as {
			r.acked++
			switch got, ok := bySeq[a.seq]; {
			case !ok || count[a.data] == 0:
				r.missing++
			case got != a.data:
				r.misplace++
			}
		}
	}
	for _, ck := range checkers {
		ck.mu.Lock()
		r.delivered += ck.events
		r.gaps += ck.gaps
		r.reorder += ck.reorder
		r.silent += ck.silentEpoch
		r.resets += ck.resets
		if ck.epoch == epoch && ck.seq == head && ck.first >= 1 && ck.first <= head+1 && ck.seq <= uint64(len(recs)) {
			if ck.sum != prefix[ck.seq]-prefix[ck.first-1] {
				r.contentBad++
			}
		}
		ck.mu.Unlock()
	}
	r.epochs = []string{epoch}
	closeAll()
	r.failovers = failovers.Load()
	r.elapsed = time.Since(start)

	fail := func(cond bool, format string, args ...any) {
		if cond {
			r.failures = append(r.failures, fmt.Sprintf(format, args...))
		}
	}
	fail(r.gaps+r.reorder+r.silent > 0, "%d gaps, %d reorders, %d silent epoch changes", r.gaps, r.reorder, r.silent)
	fail(r.atHead != len(checkers), "%d of %d clients at the head", r.atHead, len(checkers))
	fail(r.contentBad > 0, "%d clients whose events differ from the log's", r.contentBad)
	fail(r.twice+r.missing+r.misplace > 0, "%d appended twice, %d acked but missing, %d at another seq than acked", r.twice, r.missing, r.misplace)
	fail(r.resets > 0, "%d resets although Redis kept its data (AOF, fsync always)", r.resets)
	fail(r.acked == 0, "nothing was acked")
	return r, nil
}

func (r *results) figures() [][2]string {
	var faults []string
	total := 0
	for _, k := range []string{"CLIENT KILL TYPE pubsub", "CLIENT KILL TYPE normal", "Redis SIGSTOP 1.5 s", "Redis SIGKILL, restart with AOF", "node crash, restart after 1 s"} {
		faults = append(faults, fmt.Sprintf("%d %s", r.faults[k], k))
		total += r.faults[k]
	}
	verdict := "PASS"
	if !r.ok() {
		verdict = "FAIL: " + strings.Join(r.failures, "; ")
	}
	return [][2]string{
		{"machine", fmt.Sprintf("%d CPUs, %s/%s, %s; load average %s when the run began (other processes included)", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), r.loadavg)},
		{"load", fmt.Sprintf("%d nodes on one redis-server (AOF, fsync always), %d clients, %d client publishers at %d events/s in all, %v", r.nodes, r.clients, r.pubs, r.rate, r.duration)},
		{"events", fmt.Sprintf("head %d in epoch %s; %d delivered to the clients", r.head, strings.Join(r.epochs, ", "), r.delivered)},
		{"moves between nodes", fmt.Sprintf("%d clients moved at random and resumed on another node; %d failovers to the next URL after a failed connection", r.moves, r.failovers)},
		{"faults", fmt.Sprintf("%d: %s", total, strings.Join(faults, ", "))},
		{"loss / reorders / silent epoch changes", fmt.Sprintf("%d / %d / %d; %d clients whose events differ from the log's", r.gaps, r.reorder, r.silent, r.contentBad)},
		{"resets", fmt.Sprintf("%d", r.resets)},
		{"clients at head", fmt.Sprintf("%d of %d", r.atHead, r.clients)},
		{"client publishes", fmt.Sprintf("%d acked, %d failed (given up: the run ended while they waited)", r.acked, r.failed)},
		{"exactly once", fmt.Sprintf("%d appended twice, %d acked but missing, %d at another seq than acked", r.twice, r.missing, r.misplace)},
		{"peak", fmt.Sprintf("heap %.1f MiB, %d goroutines (nodes, clients and harness in one process)", float64(r.peakHeap)/(1<<20), r.peakGoroutines)},
		{"elapsed", r.elapsed.Round(time.Millisecond).String()},
		{"verdict", verdict},
	}
}

func (r *results) print(w io.Writer) {
	for _, f := range r.figures() {
		fmt.Fprintf(w, "%-40s %s\n", f[0]+":", f[1])
	}
}

func (r *results) markdown(w io.Writer) {
	fmt.Fprintf(w, "`cd redislog && go run ./cmd/nodesoak -nodes %d -clients %d -duration %v`\n\n| figure | value |\n|---|---|\n", r.nodes, r.clients, r.duration)
	for _, f := range r.figures() {
		fmt.Fprintf(w, "| %s | %s |\n", f[0], f[1])
	}
}
