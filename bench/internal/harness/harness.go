// Package harness runs the benchmark: it starts each server under test in
// its own process, connects the load clients, steps the offered load up
// until a server fails, and writes the results, the tables in
// BENCHMARKS.md and the chart.
package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/fanout-go/fanout/bench/internal/load"
	"github.com/fanout-go/fanout/bench/internal/peer"
	"github.com/fanout-go/fanout/bench/internal/server"
)

// Config is one run of the harness.
type Config struct {
	Mode         string
	Command      string
	Ns           []int
	Payloads     []int
	Rounds       int
	Peers        []string
	StepDur      time.Duration   // length of one ladder step
	CommonDur    time.Duration   // length of the common-load step
	Factor       float64         // ladder growth per step
	Refine       int             // steps of bisection after the first failure
	Common       map[int]float64 // offered deliveries/s at the common load, per N
	MaxOffered   float64         // the ladder stops there
	ReplayConns  int
	ReplayEvents int
	History      int
	WriteTimeout time.Duration
	Parallel     int           // handshakes in flight while connecting
	ReadGap      time.Duration // see load.NewPool
	// Before each step the harness waits, for at most QuietWait, until
	// other processes use less than Quiet cores; a step that fails while
	// they used more is tried once more.
	Quiet     float64
	QuietWait time.Duration
	Retry     bool
	// Warmup is how long each step publishes, unmeasured, before it
	// measures.
	Warmup time.Duration
	// IdleSettle is how long connections sit idle before the idle figures
	// are read.
	IdleSettle time.Duration

	Pin                  bool
	ServerCPU            int
	Profile              bool          // CPU profiles of the fanout server at the common load
	ProfileMax           bool          // and at its maximum sustained load
	ProfileDur           time.Duration // length of a profiled step
	OutDir               string        // results.json, chart, profiles
	Markdown             string        // the file whose generated section is rewritten; empty: none
	Log                  io.Writer
	Launch               Launcher // how server processes start; nil: Process
	SkipMachineDetection bool
}

// Bound is the p99 latency a step must stay within with n connections:
// 100 ms up to 1,000 connections, 250 ms from 10,000 (where one core
// writes to every socket), in between on a straight line.
func Bound(n int) time.Duration {
	switch {
	case n <= 1000:
		return 100 * time.Millisecond
	case n >= 10000:
		return 250 * time.Millisecond
	default:
		return 100*time.Millisecond + time.Duration(float64(150*time.Millisecond)*float64(n-1000)/9000)
	}
}

// Launcher starts a server under test and returns its address and a
// function that stops it.
type Launcher func(p peer.Peer, cfg peer.Config, profile string) (addr string, stop func(), err error)

// InProcess runs servers inside the calling process (for tests).
func InProcess(p peer.Peer, cfg peer.Config, profile string) (string, func(), error) {
	r, err := server.Listen(p, cfg, profile)
	if err != nil {
		return "", nil, err
	}
	return r.Addr, r.Close, nil
}

// Process runs each server in a process of its own: this executable with
// -serve, pinned to one core with taskset when pin is set, GOMAXPROCS=1.
func Process(pin bool, cpu int) Launcher {
	return func(p peer.Peer, cfg peer.Config, profile string) (string, func(), error) {
		self, err := os.Executable()
		if err != nil {
			return "", nil, err
		}
		args := []string{"-serve", p.Name,
			"-serve-conns", strconv.Itoa(cfg.MaxConns),
			"-history", strconv.Itoa(cfg.History),
			"-write-timeout", cfg.WriteTimeout.String(),
		}
		if profile != "" {
			args = append(args, "-cpuprofile", profile)
		}
		var cmd *exec.Cmd
		if pin {
			cmd = exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), self}, args...)...)
		} else {
			cmd = exec.Command(self, args...)
		}
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return "", nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return "", nil, err
		}
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		waited := make(chan error, 1)
		stop := func() {
			_ = stdin.Close() // the server exits when its input closes
			select {
			case <-waited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-waited
			}
		}
		var ready server.Ready
		dec := json.NewDecoder(stdout)
		readErr := make(chan error, 1)
		go func() { readErr <- dec.Decode(&ready) }()
		select {
		case err = <-readErr:
		case <-time.After(30 * time.Second):
			err = fmt.Errorf("server %s did not start in 30 s", p.Name)
		}
		go func() {
			_, _ = io.Copy(io.Discard, stdout)
			waited <- cmd.Wait()
		}()
		if err != nil {
			stop()
			return "", nil, err
		}
		return ready.Addr, stop, nil
	}
}

type harness struct {
	cfg  Config
	res  *Results
	last map[string]float64 // max sustained of the previous round, by peer/N/size
}

// Run runs the benchmark and returns its results.
func Run(cfg Config) (*Results, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Launch == nil {
		cfg.Launch = Process(cfg.Pin, cfg.ServerCPU)
	}
	if _, err := server.RaiseFileLimit(); err != nil {
		fmt.Fprintf(cfg.Log, "warning: could not raise the open-file limit: %v\n", err)
	}
	peers := make([]peer.Peer, 0, len(cfg.Peers))
	for _, name := range cfg.Peers {
		p, err := peer.Lookup(name)
		if err != nil {
			return nil, err
		}
		peers = append(peers, p)
	}
	h := &harness{cfg: cfg, last: map[string]float64{}}
	h.res = &Results{
		Started: time.Now(),
		Mode:    cfg.Mode,
		Command: cfg.Command,
		Settings: Settings{
			Rounds: cfg.Rounds, Ns: cfg.Ns, Payloads: cfg.Payloads, Peers: cfg.Peers,
			StepDur: cfg.StepDur, CommonDur: cfg.CommonDur, Factor: cfg.Factor, Refine: cfg.Refine,
			Common: cfg.Common, Bounds: map[int]string{},
			ReplayConns: cfg.ReplayConns, ReplayEvents: cfg.ReplayEvents,
			History: cfg.History, WriteTimeout: cfg.WriteTimeout, Pinned: cfg.Pin, ReadGap: cfg.ReadGap, Quiet: cfg.Quiet, QuietWait: cfg.QuietWait, Retry: cfg.Retry, Warmup: cfg.Warmup,
		},
	}
	for _, n := range cfg.Ns {
		h.res.Settings.Bounds[n] = Bound(n).String()
	}
	if !cfg.SkipMachineDetection {
		h.res.Machine = DetectMachine()
	}
	if cfg.OutDir != "" {
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, err
		}
	}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, n := range cfg.Ns {
			// Interleave: every peer once per round and N, in an order
			// that rotates from round to round.
			order := slices.Clone(peers)
			k := (round - 1) % len(order)
			order = append(order[k:], order[:k]...)
			for _, p := range order {
				run := h.runPeer(round, n, p)
				h.res.Runs = append(h.res.Runs, run)
				if err := h.save(); err != nil {
					fmt.Fprintf(cfg.Log, "warning: saving results: %v\n", err)
				}
			}
		}
	}
	return h.res, h.save()
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// save writes the results as they stand, tables and chart included, so
// an interrupted run leaves what it measured.
func (h *harness) save() error {
	h.res.Elapsed = time.Since(h.res.Started)
	return Write(h.res, h.cfg.OutDir, h.cfg.Markdown)
}

// runPeer starts p's server, connects n clients and measures everything
// for that server at that N.
func (h *harness) runPeer(round, n int, p peer.Peer) (run PeerRun) {
	run = PeerRun{Round: round, N: n, Peer: p.Name}
	cfg := h.cfg
	profile := ""
	if cfg.Profile && p.Name == "fanout" && round == 1 && cfg.OutDir != "" {
		abs, err := filepath.Abs(filepath.Join(cfg.OutDir, fmt.Sprintf("fanout-n%d", n)))
		if err == nil {
			profile = abs
		}
	}
	pc := peer.Config{
		MaxConns:     2*max(n, cfg.ReplayConns) + 1000,
		History:      cfg.History,
		HistoryTTL:   time.Hour,
		WriteTimeout: cfg.WriteTimeout,
	}
	addr, stop, err := cfg.Launch(p, pc, profile)
	if err != nil {
		run.Err = err.Error()
		h.logf("round %d n=%d %s: %v", round, n, p.Name, err)
		return run
	}
	defer stop()
	ctl := &control{base: "http://" + addr, hc: &http.Client{Timeout: 10 * time.Minute}}
	defer ctl.quit()

	base, err := ctl.stats(true)
	if err != nil {
		run.Err = err.Error()
		return run
	}
	pool, err := load.NewPool(p.Kind, addr, cfg.ReadGap)
	if err != nil {
		run.Err = err.Error()
		return run
	}
	defer pool.Close()
	t0 := time.Now()
	if err := pool.Dial(n, cfg.Parallel, nil); err != nil {
		run.Err = err.Error()
		h.logf("round %d n=%d %s: connecting: %v", round, n, p.Name, err)
		return run
	}
	if err := ctl.waitConns(n, 60*time.Second); err != nil {
		run.Err = err.Error()
		return run
	}
	run.ConnectTime = time.Since(t0)
	time.Sleep(cfg.IdleSettle)
	idle, err := ctl.stats(true)
	if err != nil {
		run.Err = err.Error()
		return run
	}
	fn := float64(n)
	run.Idle = &Idle{
		Conns:             n,
		RSSPerConn:        (float64(idle.RSS) - float64(base.RSS)) / fn,
		HeapPerConn:       (float64(idle.HeapInuse) - float64(base.HeapInuse)) / fn,
		StackPerConn:      (float64(idle.StackInuse) - float64(base.StackInuse)) / fn,
		GoroutinesPerConn: float64(idle.Goroutines-base.Goroutines) / fn,
	}
	h.logf("round %d n=%d %s: %d connected in %v; idle %.1f KiB RSS, %.2f goroutines per connection",
		round, n, p.Name, n, run.ConnectTime.Round(time.Millisecond), run.Idle.RSSPerConn/1024, run.Idle.GoroutinesPerConn)

	for _, size := range cfg.Payloads {
		pr := PayloadResult{Size: size}
		common := cfg.Common[n]
		if common > 0 {
			s := h.step(ctl, pool, n, size, common, cfg.CommonDur)
			h.logStep(round, n, p.Name, size, "common", s)
			if !s.Pass && cfg.Retry && s.OtherCPU > cfg.Quiet {
				h.recover(ctl, pool, n)
				s = h.step(ctl, pool, n, size, common, cfg.CommonDur)
				s.Retry = true
				h.logStep(round, n, p.Name, size, "common again", s)
			}
			pr.Common = &s
			if profile != "" && size == cfg.Payloads[0] {
				h.profile(ctl, pool, n, size, common, "common")
			}
			if !s.Pass {
				h.recover(ctl, pool, n)
			}
		}
		h.ladder(ctl, pool, round, n, size, p.Name, &pr)
		if profile != "" && size == cfg.Payloads[0] && pr.MaxSustained > 0 && cfg.ProfileMax {
			h.profile(ctl, pool, n, size, pr.MaxSustained, "max")
		}
		run.Payloads = append(run.Payloads, pr)
	}
	if p.Replay && n == slices.Min(cfg.Ns) && cfg.ReplayConns > 0 {
		run.Replay = h.replay(ctl, pool)
		h.logf("round %d n=%d %s: reconnect and replay %d×%d: %v ok=%v %s", round, n, p.Name,
			run.Replay.Clients, run.Replay.Events, run.Replay.Time.Round(time.Millisecond), run.Replay.OK, run.Replay.Why)
	}
	pool.CloseConns()
	return run
}

func (h *harness) logStep(round, n int, name string, size int, what string, s Step) {
	verdict := "pass"
	if !s.Pass {
		verdict = "FAIL: " + s.Why
	}
	h.logf("round %d n=%d %s %dB %s %.0fk/s: p50 %v p99 %v p99.9 %v, server %.2f µs/delivery (%.0f%% core), client %.0f%% core, others %.0f%%, %.3f allocs/delivery; %s",
		round, n, name, size, what, s.Offered/1000, s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond),
		s.P999.Round(10*time.Microsecond), float64(s.ServerCPU)/1000, 100*s.ServerShare, 100*s.ClientShare, 100*s.OtherCPU, s.Allocs, verdict)
}

// ladder steps the offered load up by Factor from a load expected to pass
// until a step fails, then bisects between the last pass and that
// failure.
func (h *harness) ladder(ctl *control, pool *load.Pool, round, n, size int, name string, pr *PayloadResult) {
	cfg := h.cfg
	key := fmt.Sprintf("%s/%d/%d", name, n, size)
	rate := cfg.Common[n]
	if rate <= 0 {
		rate = 10 * float64(n)
	}
	if prev := h.last[key]; prev > 0 {
		// Start a few steps under what the previous round sustained.
		rate = max(rate, prev/math.Pow(cfg.Factor, 3))
	}
	var pass, fail float64
	try := func(offered float64, what string) bool {
		s := h.step(ctl, pool, n, size, offered, cfg.StepDur)
		pr.Steps = append(pr.Steps, s)
		h.logStep(round, n, name, size, what, s)
		if !s.Pass && cfg.Retry && s.OtherCPU > cfg.Quiet {
			// Failed while something else used the machine: once more.
			h.recover(ctl, pool, n)
			s = h.step(ctl, pool, n, size, offered, cfg.StepDur)
			s.Retry = true
			pr.Steps = append(pr.Steps, s)
			h.logStep(round, n, name, size, what+" again", s)
		}
		if s.Pass {
			pass = max(pass, offered)
			return true
		}
		if fail == 0 || offered < fail {
			fail = offered
			pr.StoppedBy = s.Why
		}
		h.recover(ctl, pool, n)
		return false
	}
	for rate <= cfg.MaxOffered && try(rate, "step") {
		rate *= cfg.Factor
	}
	if pass > 0 && fail == 0 {
		pr.StoppedBy = ceilingReached
	}
	// Even the first step failed: go down, twice at most and not below
	// one message per second.
	for i := 0; pass == 0 && i < 2 && rate/(cfg.Factor*cfg.Factor) >= float64(n); i++ {
		rate /= cfg.Factor * cfg.Factor
		try(rate, "down")
	}
	for range cfg.Refine {
		if pass == 0 || fail == 0 {
			break
		}
		try(math.Sqrt(pass*fail), "refine")
	}
	pr.MaxSustained = pass
	h.last[key] = pass
}

// ceilingReached is StoppedBy for a server that passed every step up to
// -max: its maximum is at least that, not a measured limit.
const ceilingReached = "passed every step up to -max"

// step publishes at offered deliveries/s for dur and measures it.
func (h *harness) step(ctl *control, pool *load.Pool, n, size int, offered float64, dur time.Duration) Step {
	bound := Bound(n)
	rate := offered / float64(n)
	// At least three messages, so that a step at a low rate measures more
	// than the fan-out of a single message.
	count := max(3, int(math.Round(rate*dur.Seconds())))
	s := Step{Offered: offered, Rate: rate, Count: count, Conns: n, Expected: uint64(count) * uint64(n)}
	s.QuietWait = h.waitQuiet()
	st0, err := ctl.stats(false)
	if err != nil {
		s.Why = err.Error()
		return s
	}
	pool.Reset(st0.NextSeq, size)
	if h.cfg.Warmup > 0 {
		// Publish at the same rate for a moment first, unmeasured (but
		// checked for loss): the step measures the steady state, not the
		// first messages after an idle pause.
		wr, err := ctl.run(rate, max(1, int(math.Round(rate*h.cfg.Warmup.Seconds()))), size)
		if err != nil {
			s.Why = err.Error()
			return s
		}
		if st0, err = ctl.stats(false); err != nil {
			s.Why = err.Error()
			return s
		}
		pool.Measure(wr.Last + 1)
	}
	c0 := server.CPUTime()
	busy0 := machineBusy()
	t0 := time.Now()
	rr, err := ctl.run(rate, count, size)
	if err != nil {
		s.Why = err.Error()
		return s
	}
	// Wait for every delivery, for at most the latency bound (and a
	// little) after the last publish: later ones fail the step anyway.
	deadline := time.Now().Add(2*bound + 500*time.Millisecond)
	var pg load.Progress
	for {
		pg = pool.Progress(rr.Last)
		if pg.Complete >= n || time.Now().After(deadline) || pg.Open == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	wall := time.Since(t0)
	c1 := server.CPUTime()
	busy1 := machineBusy()
	st1, err := ctl.stats(false)
	if err != nil {
		s.Why = err.Error()
		return s
	}
	lat := pool.Latency()
	s.Count = rr.Published
	s.Expected = uint64(rr.Published) * uint64(n)
	s.Delivered, s.Lost, s.Dups, s.Dropped = pg.Got, pg.Lost, pg.Dups, pg.Dropped
	s.Incomplete = n - pg.Complete
	s.Reasons = pg.Reasons
	s.P50, s.P99, s.P999 = lat.Quantile(0.50), lat.Quantile(0.99), lat.Quantile(0.999)
	s.Max = lat.Quantile(1)
	if pg.Got > 0 {
		s.ServerCPU = time.Duration(float64(st1.CPU-st0.CPU) / float64(pg.Got))
		s.Allocs = float64(st1.Mallocs-st0.Mallocs) / float64(pg.Got)
	}
	s.ServerShare = float64(st1.CPU-st0.CPU) / float64(wall)
	s.ClientShare = float64(c1-c0) / float64(wall)
	if busy0 > 0 && busy1 > 0 {
		s.OtherCPU = max(0, float64(busy1-busy0-(st1.CPU-st0.CPU)-int64(c1-c0))/float64(wall))
	}
	s.Lag, s.Aborted, s.Wall = rr.MaxLag, rr.Aborted, wall
	switch {
	case rr.Aborted:
		s.Why = "publisher fell behind and stopped"
	case rr.Errors > 0:
		s.Why = fmt.Sprintf("%d publishes failed", rr.Errors)
	case pg.Dropped > 0:
		s.Why = fmt.Sprintf("%d clients disconnected", pg.Dropped)
	case pg.Lost > 0:
		s.Why = fmt.Sprintf("%d deliveries lost", pg.Lost)
	case pg.Dups > 0:
		s.Why = fmt.Sprintf("%d duplicate deliveries", pg.Dups)
	case pg.Complete < n:
		s.Why = fmt.Sprintf("%d clients short of the last message %v after it was published", n-pg.Complete, 2*bound+500*time.Millisecond)
	case s.P99 > bound:
		s.Why = fmt.Sprintf("p99 %v over %v", s.P99.Round(time.Millisecond), bound)
	default:
		s.Pass = true
	}
	return s
}

// waitQuiet waits, for at most QuietWait, until the machine outside the
// benchmark uses less than Quiet cores, and returns how long it waited.
// Between steps the server and the load are idle, so what the machine
// does then is someone else's.
func (h *harness) waitQuiet() time.Duration {
	if h.cfg.Quiet <= 0 || h.cfg.QuietWait <= 0 {
		return 0
	}
	start := time.Now()
	for time.Since(start) < h.cfg.QuietWait {
		b0, t0 := machineBusy(), time.Now()
		time.Sleep(200 * time.Millisecond)
		b1 := machineBusy()
		if b0 == 0 || float64(b1-b0)/float64(time.Since(t0)) < h.cfg.Quiet {
			break
		}
	}
	return time.Since(start)
}

// recover brings a server back to a clean state after a failed step: it
// waits until nothing more arrives, then reconnects the clients the server
// dropped.
func (h *harness) recover(ctl *control, pool *load.Pool, n int) {
	quiet, last := time.Now(), pool.Progress(0).Got
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if got := pool.Progress(0).Got; got != last {
			quiet, last = time.Now(), got
		} else if time.Since(quiet) > 500*time.Millisecond {
			break
		}
	}
	if missing := n - pool.Open(); missing > 0 {
		if err := pool.Dial(missing, h.cfg.Parallel, nil); err != nil {
			h.logf("reconnecting %d clients: %v", missing, err)
		}
	}
	if err := ctl.waitConns(n, 60*time.Second); err != nil {
		h.logf("after a failed step: %v", err)
	}
}

// profile runs an extra step at offered load with the server's CPU
// profile on; its figures are not used.
func (h *harness) profile(ctl *control, pool *load.Pool, n, size int, offered float64, name string) {
	if err := ctl.post("/ctl/profile", url.Values{"on": {"1"}, "name": {name}}); err != nil {
		h.logf("profile: %v", err)
		return
	}
	s := h.step(ctl, pool, n, size, offered, h.cfg.ProfileDur)
	if err := ctl.post("/ctl/profile", url.Values{"on": {"0"}}); err != nil {
		h.logf("profile: %v", err)
	}
	file := filepath.Join(h.cfg.OutDir, fmt.Sprintf("fanout-n%d-%s.prof", n, name))
	pf := Profile{Peer: "fanout", N: n, Size: size, File: file,
		Load: fmt.Sprintf("%s load, %.0f deliveries/s, %d B, %v", name, offered, size, h.cfg.ProfileDur)}
	pf.Top, pf.Error = pprofTop(file)
	h.res.Profiles = append(h.res.Profiles, pf)
	h.logStep(0, n, "fanout", size, "profiled "+name, s)
	if !s.Pass {
		h.recover(ctl, pool, n)
	}
}

// pprofTop is the top of `go tool pprof -top` for a profile.
func pprofTop(file string) (top, errText string) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", file).CombinedOutput()
	if err != nil {
		return "", fmt.Sprintf("go tool pprof: %v: %s", err, bytes.TrimSpace(out))
	}
	return string(out), ""
}

// replay measures how long ReplayConns clients take to reconnect and each
// receive ReplayEvents events published while they were away.
func (h *harness) replay(ctl *control, pool *load.Pool) *Replay {
	cfg := h.cfg
	r := &Replay{Clients: cfg.ReplayConns, Events: cfg.ReplayEvents}
	fail := func(format string, args ...any) *Replay {
		r.Why = fmt.Sprintf(format, args...)
		return r
	}
	// Start from exactly ReplayConns clients that have seen everything.
	pool.CloseConns()
	if err := ctl.waitConns(0, 60*time.Second); err != nil {
		return fail("%v", err)
	}
	if err := pool.Dial(cfg.ReplayConns, cfg.Parallel, nil); err != nil {
		return fail("connecting: %v", err)
	}
	if err := ctl.waitConns(cfg.ReplayConns, 60*time.Second); err != nil {
		return fail("%v", err)
	}
	st, err := ctl.stats(false)
	if err != nil || !st.Replay {
		return fail("no stream position: %v", err)
	}
	pos := load.Resume{Offset: st.Offset, Epoch: st.Epoch}
	pool.CloseConns()
	if err := ctl.waitConns(0, 60*time.Second); err != nil {
		return fail("%v", err)
	}
	size := cfg.Payloads[0]
	rr, err := ctl.run(0, cfg.ReplayEvents, size)
	if err != nil {
		return fail("publishing: %v", err)
	}
	pool.Reset(rr.First, size)
	t0 := time.Now()
	if err := pool.Dial(cfg.ReplayConns, cfg.ReplayConns, &pos); err != nil {
		return fail("reconnecting: %v", err)
	}
	for deadline := t0.Add(2 * time.Minute); ; time.Sleep(2 * time.Millisecond) {
		pg := pool.Progress(rr.Last)
		if pg.Complete >= cfg.ReplayConns {
			r.Time = time.Since(t0)
			break
		}
		if pg.Lost > 0 || pg.Dropped > 0 || time.Now().After(deadline) {
			return fail("%d of %d complete, %d lost, %d dropped after %v", pg.Complete, cfg.ReplayConns, pg.Lost, pg.Dropped, time.Since(t0).Round(time.Millisecond))
		}
	}
	pg := pool.Progress(rr.Last)
	if pg.Lost > 0 || pg.Dups > 0 || pg.Got < uint64(cfg.ReplayConns*cfg.ReplayEvents) {
		return fail("%d received of %d, %d lost, %d duplicates", pg.Got, cfg.ReplayConns*cfg.ReplayEvents, pg.Lost, pg.Dups)
	}
	r.OK = true
	return r
}

// control talks to a server's control endpoint.
type control struct {
	base string
	hc   *http.Client
}

func (c *control) stats(settle bool) (server.Stats, error) {
	u := c.base + "/ctl/stats"
	if settle {
		u += "?settle=1"
	}
	var st server.Stats
	resp, err := c.hc.Get(u)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (c *control) run(rate float64, count, size int) (server.RunResult, error) {
	var rr server.RunResult
	q := url.Values{
		"rate":  {strconv.FormatFloat(rate, 'f', -1, 64)},
		"count": {strconv.Itoa(count)},
		"size":  {strconv.Itoa(size)},
	}
	resp, err := c.hc.Post(c.base+"/ctl/run?"+q.Encode(), "", nil)
	if err != nil {
		return rr, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return rr, fmt.Errorf("run: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return rr, json.NewDecoder(resp.Body).Decode(&rr)
}

func (c *control) post(path string, q url.Values) error {
	resp, err := c.hc.Post(c.base+path+"?"+q.Encode(), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

func (c *control) quit() { _ = c.post("/ctl/quit", nil) }

// waitConns waits until the server counts exactly n ready connections.
func (c *control) waitConns(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.stats(false)
		if err != nil {
			return err
		}
		if st.Conns == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server has %d connections, want %d, after %v", st.Conns, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
