package harness

import (
	"fmt"
	"slices"
	"strings"
)

// targets renders fanout's figures against the targets of the
// performance issue, with the shortfall where one is missed.
func targets(a *agg) string {
	if !slices.Contains(a.peers, "fanout") {
		return "fanout was not measured.\n"
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("Medians of this run. ✓ met; ✗ missed, by how much.\n\n| target |")
	type col struct{ n, size int }
	var cols []col
	for _, n := range a.ns {
		for _, size := range a.sizes {
			cols = append(cols, col{n, size})
			w(" %s · %d B |", thousands(n), size)
		}
	}
	w("\n|---|")
	for range cols {
		w("---|")
	}
	w("\n")
	med := func(xs []float64) (float64, bool) {
		if len(xs) == 0 {
			return 0, false
		}
		return summarize(xs).Med, true
	}
	row := func(name string, f func(col) string) {
		w("| %s |", name)
		for _, c := range cols {
			w(" %s |", f(c))
		}
		w("\n")
	}
	atLeast := func(got, need float64, show func(float64) string) string {
		if got >= need {
			return show(got) + " ✓"
		}
		return fmt.Sprintf("%s ✗ %.0f%% short", show(got), 100*(1-got/need))
	}
	ratio := func(v float64) string { return fmt.Sprintf("×%.2f", v) }
	vs := func(other string, need float64) func(col) string {
		return func(c col) string {
			f, ok1 := med(a.cell("fanout", c.n, c.size).max)
			o, ok2 := med(a.cell(other, c.n, c.size).max)
			if !ok1 || !ok2 || o == 0 {
				return "–"
			}
			return atLeast(f/o, need, ratio)
		}
	}
	if slices.Contains(a.peers, "hub") {
		row("max sustained ≥ 1.5× gorilla hub", vs("hub", 1.5))
	}
	if slices.Contains(a.peers, "centrifuge") {
		row("max sustained ≥ 3× centrifuge (history)", vs("centrifuge", 3))
	}
	row("max sustained ≥ 700k/s at 1,000 conns, ≥ 1.2M/s at 10,000", func(c col) string {
		need := map[int]float64{1000: 700e3, 10000: 1.2e6}[c.n]
		f, ok := med(a.cell("fanout", c.n, c.size).max)
		if need == 0 || !ok {
			return "–"
		}
		return atLeast(f, need, rate)
	})
	if slices.Contains(a.peers, "centrifuge") {
		row("CPU/delivery ≤ 0.5× centrifuge (history) at the common load", func(c col) string {
			f, ok1 := med(a.cell("fanout", c.n, c.size).cpu)
			o, ok2 := med(a.cell("centrifuge", c.n, c.size).cpu)
			if !ok1 || !ok2 || o == 0 {
				return "–"
			}
			r := f / o
			if r <= 0.5 {
				return fmt.Sprintf("×%.2f ✓", r)
			}
			return fmt.Sprintf("×%.2f ✗ %.0f%% over", r, 100*(r/0.5-1))
		})
	}
	row("p99 at the common load ≤ every other server's", func(c col) string {
		f, ok := med(a.cell("fanout", c.n, c.size).p99)
		if !ok {
			return "–"
		}
		best, who := 0.0, ""
		for _, p := range a.peers {
			if p == "fanout" {
				continue
			}
			if v, ok := med(a.cell(p, c.n, c.size).p99); ok && (who == "" || v < best) {
				best, who = v, p
			}
		}
		if who == "" {
			return ms(f)
		}
		if f <= best {
			return fmt.Sprintf("%s ✓ (best other: %s, %s)", ms(f), ms(best), who)
		}
		return fmt.Sprintf("%s ✗ %.0f%% over %s (%s)", ms(f), 100*(f/best-1), ms(best), who)
	})
	row("allocations per delivery < 0.1 (common load)", func(c col) string {
		f, ok := med(a.cell("fanout", c.n, c.size).allocs)
		if !ok {
			return "–"
		}
		if f < 0.1 {
			return fmt.Sprintf("%.3f ✓", f)
		}
		return fmt.Sprintf("%.3f ✗ %.0f× the target", f, f/0.1)
	})
	nIdle := slices.Max(a.ns)
	var rss []float64
	for _, id := range a.idle[fmt.Sprintf("fanout/%d", nIdle)] {
		rss = append(rss, id.RSSPerConn/1024)
	}
	if v, ok := med(rss); ok {
		verdict := "✓"
		if v > 18 {
			verdict = fmt.Sprintf("✗ %.0f%% over", 100*(v/18-1))
		}
		w("\nIdle memory at %s connections ≤ 18 KiB RSS per connection: %.1f KiB %s.\n", thousands(nIdle), v, verdict)
	}
	return b.String()
}
