package harness

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fanout-go/fanout/bench/internal/peer"
)

// Markers around the generated section of BENCHMARKS.md.
const (
	beginMark = "<!-- BEGIN GENERATED: written by fanbench, do not edit by hand -->"
	endMark   = "<!-- END GENERATED -->"
)

// ChartFile is the chart's name inside the output directory.
const ChartFile = "deliveries.svg"

// Rerender reads outDir/results.json and writes the chart and the
// markdown section again, from the saved results.
func Rerender(outDir, markdown string) error {
	b, err := os.ReadFile(filepath.Join(outDir, "results.json"))
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	return Write(&res, outDir, markdown)
}

// Write saves the results: results.json and the chart in outDir, and the
// generated section of the markdown file (if any), which links the chart.
func Write(res *Results, outDir, markdown string) error {
	if outDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "results.json"), b, 0o644); err != nil {
		return err
	}
	a := aggregate(res)
	if err := os.WriteFile(filepath.Join(outDir, ChartFile), []byte(chart(a)), 0o644); err != nil {
		return err
	}
	if markdown == "" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(markdown), filepath.Join(outDir, ChartFile))
	if err != nil {
		rel = filepath.Join(outDir, ChartFile)
	}
	return rewrite(markdown, tables(a, filepath.ToSlash(rel)))
}

// rewrite replaces the generated section of file, or appends one.
func rewrite(file, section string) error {
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	block := beginMark + "\n" + section + endMark
	i, j := strings.Index(text, beginMark), strings.Index(text, endMark)
	if i >= 0 && j > i {
		text = text[:i] + block + text[j+len(endMark):]
	} else {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += "\n" + block + "\n"
	}
	return os.WriteFile(file, []byte(text), 0o644)
}

// cell is one (peer, N, payload) across rounds.
type cell struct {
	max, ratio           []float64 // max sustained; its ratio to the raw floor of the same round
	cpu, allocs          []float64 // at the common load
	p50, p99, p999       []float64 // at the common load, seconds
	common               float64
	commonFailed, noStep int
	stoppedBy            map[string]int
	loadAtFail           []float64 // the load process's share of its core at the first failing step
}

type agg struct {
	res      *Results
	peers    []string
	ns       []int
	sizes    []int
	cells    map[string]*cell
	idle     map[string][]Idle // by peer/N
	replay   map[string][]Replay
	errs     []string
	rounds   int  // rounds with results
	other    stat // cores used by others during steps
	profiles []Profile
}

func key(p string, n, size int) string { return fmt.Sprintf("%s/%d/%d", p, n, size) }

func aggregate(res *Results) *agg {
	a := &agg{res: res, cells: map[string]*cell{}, idle: map[string][]Idle{}, replay: map[string][]Replay{}, profiles: res.Profiles}
	for _, p := range peer.All {
		if slices.Contains(res.Settings.Peers, p.Name) {
			a.peers = append(a.peers, p.Name)
		}
	}
	a.ns, a.sizes = res.Settings.Ns, res.Settings.Payloads
	raw := map[string]float64{} // round/N/size -> raw max
	for _, r := range res.Runs {
		if r.Peer == "raw" {
			for _, pr := range r.Payloads {
				raw[fmt.Sprintf("%d/%d/%d", r.Round, r.N, pr.Size)] = pr.MaxSustained
			}
		}
	}
	var others []float64
	for _, r := range res.Runs {
		a.rounds = max(a.rounds, r.Round)
		if r.Err != "" {
			a.errs = append(a.errs, fmt.Sprintf("round %d, %d connections, %s: %s", r.Round, r.N, r.Peer, r.Err))
		}
		pk := fmt.Sprintf("%s/%d", r.Peer, r.N)
		if r.Idle != nil {
			a.idle[pk] = append(a.idle[pk], *r.Idle)
		}
		if r.Replay != nil {
			a.replay[r.Peer] = append(a.replay[r.Peer], *r.Replay)
		}
		for _, pr := range r.Payloads {
			k := key(r.Peer, r.N, pr.Size)
			c := a.cells[k]
			if c == nil {
				c = &cell{stoppedBy: map[string]int{}}
				a.cells[k] = c
			}
			c.max = append(c.max, pr.MaxSustained)
			if f := raw[fmt.Sprintf("%d/%d/%d", r.Round, r.N, pr.Size)]; f > 0 {
				c.ratio = append(c.ratio, pr.MaxSustained/f)
			}
			if pr.StoppedBy != "" {
				c.stoppedBy[kindOf(pr.StoppedBy)]++
			}
			if f, ok := firstFailure(pr.Steps); ok {
				c.loadAtFail = append(c.loadAtFail, f.ClientShare)
			}
			if s := pr.Common; s != nil {
				c.common = s.Offered
				if !s.Pass {
					c.commonFailed++
				}
				c.cpu = append(c.cpu, s.ServerCPU.Seconds()*1e6)
				c.allocs = append(c.allocs, s.Allocs)
				c.p50 = append(c.p50, s.P50.Seconds())
				c.p99 = append(c.p99, s.P99.Seconds())
				c.p999 = append(c.p999, s.P999.Seconds())
				others = append(others, s.OtherCPU)
			}
			for _, s := range pr.Steps {
				others = append(others, s.OtherCPU)
			}
		}
	}
	a.other = summarize(others)
	return a
}

// firstFailure returns the failing step with the lowest offered load.
func firstFailure(steps []Step) (Step, bool) {
	var f Step
	ok := false
	for _, s := range steps {
		if !s.Pass && (!ok || s.Offered < f.Offered) {
			f, ok = s, true
		}
	}
	return f, ok
}

// kindOf shortens a step's failure to its kind.
func kindOf(why string) string {
	switch {
	case strings.Contains(why, "p99"):
		return "p99 over bound"
	case strings.Contains(why, "disconnected"):
		return "clients dropped"
	case strings.Contains(why, "lost"):
		return "messages lost"
	case strings.Contains(why, "short of"):
		return "not delivered in time"
	case strings.Contains(why, "publisher"):
		return "publisher fell behind"
	default:
		return why
	}
}

func (a *agg) cell(p string, n, size int) *cell {
	if c := a.cells[key(p, n, size)]; c != nil {
		return c
	}
	return &cell{stoppedBy: map[string]int{}}
}

func label(name string) string {
	if p, err := peer.Lookup(name); err == nil {
		return p.Label
	}
	return name
}

// rate formats deliveries per second.
func rate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func ms(sec float64) string {
	switch d := time.Duration(sec * float64(time.Second)); {
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", sec*1e3)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", sec*1e3)
	default:
		return fmt.Sprintf("%.2f ms", sec*1e3)
	}
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func spread(st stat, f func(float64) string) string {
	if st.N == 0 {
		return "–"
	}
	if st.N == 1 || st.Min == st.Max {
		return f(st.Med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(st.Med), f(st.Min), f(st.Max))
}

// tables renders the generated section.
func tables(a *agg, chartPath string) string {
	var b strings.Builder
	res := a.res
	s := res.Settings
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	done := fmt.Sprintf("%d round(s)", a.rounds)
	if a.rounds < s.Rounds {
		done = fmt.Sprintf("%d of %d rounds so far", a.rounds, s.Rounds)
	}
	w("Latest run: **%s mode**, %s, %s, took %v. Command: `%s`.\n\n",
		res.Mode, done, res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Elapsed.Round(time.Second), res.Command)
	m := res.Machine
	w("Machine: %d CPUs (`nproc`), %s, Linux %s, %s; load average when the run started: %s. ", m.CPUs, m.CPUModel, m.Kernel, m.Go, m.LoadAvg)
	pin := "server processes pinned to core 0 with `GOMAXPROCS=1`, load process pinned to core 1"
	if !s.Pinned {
		pin = "**not pinned** (taskset missing or -pin=false)"
	}
	w("Pinning: %s. Other processes on the machine used a median of %.2f cores during the steps (at most %.2f, of %d).\n\n", pin, a.other.Med, a.other.Max, m.CPUs)
	if res.Mode == "quick" {
		w("Quick mode: one round, %v steps, ladder ×%.2g, one bisection, no second tries: the spread over rounds is not measured, the maxima are coarse (within a factor of about %.2g), and one noisy step can stop a ladder early.\n\n",
			s.StepDur, s.Factor, math.Sqrt(s.Factor))
	} else {
		w("Steps of %v (common load %v), ladder ×%.2g then %d bisection(s): maxima are resolved to about ×%.3g.\n\n",
			s.StepDur, s.CommonDur, s.Factor, s.Refine, math.Pow(s.Factor, 1/math.Pow(2, float64(s.Refine))))
	}
	if s.Warmup > 0 {
		w("Each step was preceded by %v of unmeasured publishing at its rate.\n\n", s.Warmup)
	} else {
		w("No warm-up before the steps: each step's figures include its first messages after the pause between steps.\n\n")
	}

	w("#### Maximum sustained deliveries per second\n\n")
	w("p99 within its bound (%s), nothing lost, nobody disconnected. Median over rounds (min–max), and × the raw floor measured in the same round (median of the per-round ratios).\n\n", bounds(s))
	w("| server |")
	for _, n := range a.ns {
		for _, size := range a.sizes {
			w(" %s conns · %d B |", thousands(n), size)
		}
	}
	w("\n|---|")
	for range len(a.ns) * len(a.sizes) {
		w("---:|")
	}
	w("\n")
	for _, p := range a.peers {
		w("| %s |", label(p))
		for _, n := range a.ns {
			for _, size := range a.sizes {
				c := a.cell(p, n, size)
				txt := spread(summarize(c.max), rate)
				if p != "raw" && len(c.ratio) > 0 {
					txt += fmt.Sprintf(" · ×%.2f", summarize(c.ratio).Med)
				}
				w(" %s |", txt)
			}
		}
		w("\n")
	}
	w("\nWhat stopped the ladder (first failing step, per round):\n\n")
	for _, p := range a.peers {
		var parts []string
		for _, n := range a.ns {
			for _, size := range a.sizes {
				c := a.cell(p, n, size)
				ks := make([]string, 0, len(c.stoppedBy))
				for k, v := range c.stoppedBy {
					ks = append(ks, fmt.Sprintf("%s ×%d", k, v))
				}
				slices.Sort(ks)
				if len(c.loadAtFail) > 0 {
					ks = append(ks, fmt.Sprintf("load process at %.0f%% of its core there", 100*summarize(c.loadAtFail).Med))
				}
				if len(ks) > 0 {
					parts = append(parts, fmt.Sprintf("%s·%d B: %s", thousands(n), size, strings.Join(ks, ", ")))
				}
			}
		}
		if len(parts) > 0 {
			w("- %s — %s\n", label(p), strings.Join(parts, "; "))
		}
	}
	w("\n![Maximum sustained deliveries per second against connections](%s)\n\n", chartPath)

	w("#### At a common offered load\n\n")
	w("The same offered load for every server, below every server's saturation where possible. Server CPU per delivery is the server process's user+system time (getrusage) from the first publish until the last delivery arrived, divided by the deliveries; allocations are the server's `runtime.MemStats.Mallocs` over the same window, publishing included. Latency is measured at the client from each payload's intended send time. Medians over rounds.\n\n")
	w("| server | conns | payload | offered | server CPU µs/delivery | allocs/delivery | p50 | p99 | p99.9 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range a.ns {
		for _, size := range a.sizes {
			for _, p := range a.peers {
				c := a.cell(p, n, size)
				if len(c.cpu) == 0 {
					continue
				}
				flag := ""
				if c.commonFailed > 0 {
					flag = fmt.Sprintf(" (failed %d of %d)", c.commonFailed, len(c.cpu))
				}
				w("| %s%s | %s | %d B | %s/s | %.2f | %.3f | %s | %s | %s |\n", label(p), flag, thousands(n), size, rate(c.common),
					summarize(c.cpu).Med, summarize(c.allocs).Med, ms(summarize(c.p50).Med), ms(summarize(c.p99).Med), ms(summarize(c.p999).Med))
			}
		}
	}

	nIdle := slices.Max(a.ns)
	w("\n#### Idle connections and replay\n\n")
	w("Idle: growth of the server process over its state before any client connected, divided by the %s connections, after a GC that returns free pages to the system (RSS from /proc, heap = HeapInuse, stack = StackInuse). Replay: %s clients that had everything disconnect, %s events are published, and the clients reconnect at once, each resuming from its last position; the time runs from the first reconnect until every client has every missed event. n/a: the server has no replay.\n\n",
		thousands(nIdle), thousands(s.ReplayConns), thousands(s.ReplayEvents))
	w("| server | RSS KiB/conn | heap KiB/conn | stack KiB/conn | goroutines/conn | reconnect + replay |\n|---|---:|---:|---:|---:|---:|\n")
	for _, p := range a.peers {
		ids := a.idle[fmt.Sprintf("%s/%d", p, nIdle)]
		f := func(get func(Idle) float64) string {
			xs := make([]float64, len(ids))
			for i, id := range ids {
				xs[i] = get(id)
			}
			return spread(summarize(xs), func(v float64) string { return fmt.Sprintf("%.1f", v) })
		}
		rp := "n/a"
		if pe, err := peer.Lookup(p); err == nil && pe.Replay {
			var ts []float64
			bad := 0
			for _, r := range a.replay[p] {
				if r.OK {
					ts = append(ts, r.Time.Seconds())
				} else {
					bad++
				}
			}
			rp = spread(summarize(ts), ms)
			if bad > 0 {
				rp += fmt.Sprintf(" (%d failed)", bad)
			}
		}
		w("| %s | %s | %s | %s | %s | %s |\n", label(p),
			f(func(i Idle) float64 { return i.RSSPerConn / 1024 }), f(func(i Idle) float64 { return i.HeapPerConn / 1024 }),
			f(func(i Idle) float64 { return i.StackPerConn / 1024 }),
			spread(summarize(goroutines(ids)), func(v float64) string { return fmt.Sprintf("%.2f", v) }), rp)
	}

	w("\n#### fanout against the targets\n\n")
	b.WriteString(targets(a))

	if len(a.errs) > 0 {
		w("\n#### Runs that failed\n\n")
		for _, e := range a.errs {
			w("- %s\n", e)
		}
	}
	for _, pf := range a.profiles {
		w("\n#### CPU profile of the fanout server: %s connections, %s\n\n", thousands(pf.N), pf.Load)
		if pf.Error != "" {
			w("Profile %s could not be read: %s\n", filepath.Base(pf.File), pf.Error)
			continue
		}
		w("`go tool pprof -top %s` (file in the output directory, not committed):\n\n```text\n%s```\n", filepath.Base(pf.File), head(dropHeader(pf.Top), 26))
	}
	return b.String()
}

func goroutines(ids []Idle) []float64 {
	xs := make([]float64, len(ids))
	for i, id := range ids {
		xs[i] = id.GoroutinesPerConn
	}
	return xs
}

func bounds(s Settings) string {
	parts := make([]string, 0, len(s.Ns))
	for _, n := range s.Ns {
		parts = append(parts, fmt.Sprintf("%s at %s connections", s.Bounds[n], thousands(n)))
	}
	return strings.Join(parts, ", ")
}

func head(s string, lines int) string {
	ls := strings.SplitAfter(s, "\n")
	if len(ls) > lines {
		ls = ls[:lines]
	}
	return strings.Join(ls, "")
}

// dropHeader removes pprof's lines about the file (name, build id, time).
func dropHeader(top string) string {
	var b strings.Builder
	for line := range strings.Lines(top) {
		switch {
		case strings.HasPrefix(line, "File:"), strings.HasPrefix(line, "Build ID:"),
			strings.HasPrefix(line, "Type:"), strings.HasPrefix(line, "Time:"):
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
