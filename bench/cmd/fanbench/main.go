// Command fanbench measures fanout next to centrifuge, a gorilla-style hub
// and a raw-socket floor: each server in its own process pinned to one
// core, the load clients pinned to another, publishing open loop at
// stepped rates. See BENCHMARKS.md.
//
//	go run ./cmd/fanbench -quick   # about 4 minutes
//	go run ./cmd/fanbench          # the full run
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/fanout-go/fanout/bench/internal/harness"
	"github.com/fanout-go/fanout/bench/internal/peer"
	"github.com/fanout-go/fanout/bench/internal/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fanbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		quick      = flag.Bool("quick", false, "quick mode: 1 round, 1 s steps, a coarser ladder, no retries")
		ns         = flag.String("n", "1000,10000", "connection counts")
		payloads   = flag.String("payloads", "64,512", "payload sizes in bytes")
		rounds     = flag.Int("rounds", 3, "rounds (peers interleaved in each); quick: 1")
		peers      = flag.String("peers", peerNames(), "servers under test")
		step       = flag.Duration("step", 3*time.Second, "publishing time of one ladder step; quick: 1s")
		commonDur  = flag.Duration("common-step", 0, "publishing time of the common-load step (default twice -step; quick: -step)")
		common     = flag.String("common", "1000:40000,10000:20000", "common offered load per N, deliveries/s")
		factor     = flag.Float64("factor", 1.4, "ladder growth per step; quick: 2")
		refine     = flag.Int("refine", 2, "bisection steps after the first failure; quick: 1")
		maxOffered = flag.Float64("max", 2e7, "highest offered load tried, deliveries/s")
		replayN    = flag.Int("replay-conns", 1000, "clients that reconnect and replay (0: skip)")
		replayE    = flag.Int("replay-events", 1000, "events each replays")
		history    = flag.Int("history", 10000, "events kept for replay by servers that keep any")
		writeTO    = flag.Duration("write-timeout", 10*time.Second, "write timeout of every server")
		parallel   = flag.Int("parallel", 64, "handshakes in flight while connecting")
		warmup     = flag.Duration("warmup", time.Second, "unmeasured publishing at the step's rate before each step; quick: 300ms")
		idleSettle = flag.Duration("idle", 3*time.Second, "how long connections sit idle before the idle figures are read (longer than fanout's 2 s writer linger)")
		readGap    = flag.Duration("read-gap", 2*time.Millisecond, "least time between the load loop's sweeps over ready sockets")
		quiet      = flag.Float64("quiet", 0.3, "before a step, wait until other processes use fewer cores than this (0: never wait); retry a step that failed above it")
		retry      = flag.Bool("retry", true, "run a step that failed while other processes were busy once more; quick: false")
		quietWait  = flag.Duration("quiet-wait", 5*time.Second, "longest wait for quiet before a step; quick: 1s")
		pin        = flag.Bool("pin", true, "pin servers and load to separate cores with taskset")
		serverCPU  = flag.Int("server-cpu", 0, "core of the server processes")
		loadCPU    = flag.Int("load-cpu", 1, "core of the load process")
		profile    = flag.Bool("profile", true, "profile the fanout server in round 1 at the common load (first payload)")
		profileMax = flag.Bool("profile-max", true, "also at its maximum sustained load; quick: false")
		profileDur = flag.Duration("profile-step", 10*time.Second, "publishing time of a profiled step; quick: 3s")
		out        = flag.String("out", "results", "directory for results.json, the chart and profiles")
		md         = flag.String("md", "BENCHMARKS.md", "file whose generated section is rewritten (empty: none)")
		rerender   = flag.Bool("rerender", false, "only rewrite the chart and the generated section from -out's results.json")
		loadProf   = flag.String("load-cpuprofile", "", "write a CPU profile of the load process to `file`")

		serve      = flag.String("serve", "", "internal: run this server under test and its control endpoint")
		serveConns = flag.Int("serve-conns", 25000, "internal: connection limit of the server")
		cpuprofile = flag.String("cpuprofile", "", "server process: write CPU profiles, when the load process asks, to `prefix`-<name>.prof")
		maxLife    = flag.Duration("max-life", 3*time.Hour, "server process: exit after this long whatever happens")
	)
	flag.Parse()

	if *serve != "" {
		p, err := peer.Lookup(*serve)
		if err != nil {
			return err
		}
		return server.Main(p, peer.Config{
			MaxConns: *serveConns, History: *history, HistoryTTL: time.Hour, WriteTimeout: *writeTO,
		}, *cpuprofile, *maxLife)
	}

	if *rerender {
		return harness.Rerender(*out, *md)
	}

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["rounds"] {
			*rounds = 1
		}
		if !set["step"] {
			*step = time.Second
		}
		if !set["factor"] {
			*factor = 2
		}
		if !set["refine"] {
			*refine = 1
		}
		if !set["profile-step"] {
			*profileDur = 2 * time.Second
		}
		if !set["retry"] {
			*retry = false
		}
		if !set["quiet-wait"] {
			*quietWait = time.Second
		}
		if !set["warmup"] {
			*warmup = 300 * time.Millisecond
		}
		if !set["common-step"] {
			*commonDur = *step
		}
		if !set["profile-max"] {
			*profileMax = false
		}
	}
	if *commonDur == 0 {
		*commonDur = 2 * *step
	}

	if *pin && os.Getenv("FANBENCH_PINNED") == "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			fmt.Fprintln(os.Stderr, "fanbench: taskset not found; running unpinned")
			*pin = false
		} else {
			return repin(*loadCPU)
		}
	}

	cfg := harness.Config{
		Mode:         map[bool]string{true: "quick", false: "full"}[*quick],
		Command:      "go run ./cmd/fanbench " + strings.Join(os.Args[1:], " "),
		Rounds:       *rounds,
		StepDur:      *step,
		CommonDur:    *commonDur,
		Factor:       *factor,
		Refine:       *refine,
		MaxOffered:   *maxOffered,
		ReplayConns:  *replayN,
		ReplayEvents: *replayE,
		History:      *history,
		WriteTimeout: *writeTO,
		Parallel:     *parallel,
		ReadGap:      *readGap,
		Quiet:        *quiet,
		QuietWait:    *quietWait,
		Retry:        *retry,
		IdleSettle:   *idleSettle,
		Warmup:       *warmup,
		Pin:          *pin,
		ServerCPU:    *serverCPU,
		Profile:      *profile,
		ProfileMax:   *profileMax,
		ProfileDur:   *profileDur,
		OutDir:       *out,
		Markdown:     *md,
		Log:          os.Stderr,
		Peers:        strings.Split(*peers, ","),
	}
	if strings.TrimSpace(strings.Join(os.Args[1:], " ")) == "" {
		cfg.Command = "go run ./cmd/fanbench"
	}
	var err error
	if cfg.Ns, err = ints(*ns); err != nil {
		return fmt.Errorf("-n: %w", err)
	}
	if cfg.Payloads, err = ints(*payloads); err != nil {
		return fmt.Errorf("-payloads: %w", err)
	}
	if cfg.Common, err = loads(*common); err != nil {
		return fmt.Errorf("-common: %w", err)
	}
	if cfg.Rounds < 1 || cfg.Factor <= 1 || len(cfg.Ns) == 0 || len(cfg.Payloads) == 0 {
		return errors.New("need at least one round, N and payload, and a factor above 1")
	}
	if *loadProf != "" {
		f, err := os.Create(*loadProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	res, err := harness.Run(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "fanbench: done in %v\n", res.Elapsed.Round(time.Second))
	return nil
}

// repin runs this command again pinned to the load core, with GOMAXPROCS=1.
func repin(cpu int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "FANBENCH_PINNED=1", "GOMAXPROCS=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}

func peerNames() string {
	names := make([]string, len(peer.All))
	for i, p := range peer.All {
		names[i] = p.Name
	}
	return strings.Join(names, ",")
}

func ints(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func loads(s string) (map[int]float64, error) {
	out := map[int]float64{}
	for f := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), ":")
		n, err1 := strconv.Atoi(k)
		r, err2 := strconv.ParseFloat(v, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad N:deliveries/s pair %q", f)
		}
		out[n] = r
	}
	return out, nil
}
