package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// figure is one line of the results: a name and a value.
type figure struct{ name, value string }

// figures lists the run's results in the order they are printed.
func (r *Result) figures() []figure {
	c := r.Config
	machine := fmt.Sprintf("%d CPUs, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if r.LoadAvg != "" {
		machine += "; load average " + r.LoadAvg + " when the run began (other processes included)"
	}
	f := []figure{
		{"machine", machine},
		{"load", fmt.Sprintf("%d clients (+1 observer), %d events/s from %d server and %d client publishers, %v (chaos %v, then a stall benchmark: %v without, then %v with a connection that never reads)",
			c.Clients, c.Rate, c.ServerPubs, c.ClientPubs, c.Duration, c.chaosPhase(), c.benchPhase(), c.benchPhase())},
		{"events published", fmt.Sprintf("%d (%d server-side, %d client-side); head %d", r.Published, r.ServerPublished, r.ClientPublished, r.Head)},
		{"events delivered", fmt.Sprintf("%d to the checked clients (%d event messages written by the server, replays included)", r.Delivered, r.ServerDelivered)},
		{"loss / duplicates / reorders", fmt.Sprintf("%d / %d / %d (worst client: %d / %d / %d); corrupt streams %d", r.Loss, r.Dups, r.Reorder, r.MaxLoss, r.MaxDups, r.MaxReorder, r.Corrupt)},
		{"clients at head", fmt.Sprintf("%d of %d", r.ClientsAtHead, c.Clients)},
		{"client publishes", fmt.Sprintf("%d acked, %d failed; %d resent after a reconnect; %d committed with their ack lost (injected), %d of them retried and answered with the original seq (deduplicated); %d passed the validation hook, which retries of committed publishes skip",
			r.PublishOK, r.PublishFailed, r.PublishRetried, r.PublishAckLost, r.PublishDeduplicated, r.PublishValidated)},
		{"exactly once", fmt.Sprintf("%d appended twice, %d missing, %d at another seq than acked, %d unaccounted", r.PublishTwice, r.PublishMissing, r.PublishMisplaced, r.Unaccounted)},
		{"resumes", fmt.Sprintf("%d replayed, %d reset (client resets %d); %d reconnects; %d duplicates dropped by clients after a resume", r.ResumesReplayed, r.ResumesReset, r.ClientResets, r.ClientReconnects, r.ClientDuplicatesDropped)},
		{"faults injected", fmt.Sprintf("%d: %d server-side TCP kills, %d client-side TCP kills, %d host closes 1001, %d host closes 4001, %d acks lost after commit (1001), %d handler stalls, %d never-reading connections",
			r.Faults.total(), r.Faults.ServerTCPKills, r.Faults.ClientTCPKills, r.Faults.HostGoingAway, r.Faults.HostSlowClose, r.Faults.AcksLost, r.Faults.HandlerStalls, r.Faults.StallerConnects)},
		{"slow-consumer closes", fmt.Sprintf("%d (by the session: fell behind or write timed out)", r.SlowConsumerCloses)},
		{"connections closed, by code", r.codes()},
		{"peak", fmt.Sprintf("heap %s, %d goroutines (server, clients and harness in one process)", mib(r.PeakHeap), r.PeakGorout)},
	}
	for _, b := range r.Bench {
		v := fmt.Sprintf("%.0f events/s delivered (%d published in %.0f s, %.1f%% of them × clients delivered within it), latency p50 %v, p99 %v, max %v; peak heap %s",
			float64(b.Delivered)/b.Seconds, b.Published, b.Seconds, b.coverage(), round(b.P50), round(b.P99), round(b.Max), mib(b.PeakHeap))
		if b.StalledCloses > 0 {
			v += fmt.Sprintf("; the connection that never reads was closed %s, %d of them as a slow consumer (4001)", times(b.StalledCloses), b.StalledSlow)
		}
		f = append(f, figure{"bench: " + b.Name, v})
	}
	if r.Restart.Done {
		f = append(f, figure{"restart into a new epoch", fmt.Sprintf("%d of %d clients told resumed:false (%d at the new head), %d silent gaps, %d at the new head after one more event",
			r.Restart.ClientsReset, c.Clients, r.Restart.ResetAtNewHead, r.Restart.SilentGaps, r.Restart.ClientsAtNewHead)})
	}
	f = append(f, figure{"elapsed", round(r.Elapsed).String()})
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL: " + strings.Join(r.Failures, "; ")
	}
	return append(f, figure{"verdict", verdict})
}

func times(n uint64) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

func (r *Result) codes() string {
	var parts []string
	for _, code := range sortedCodes(r.ClosesByCode) {
		parts = append(parts, fmt.Sprintf("%d: %d", code, r.ClosesByCode[code]))
	}
	return strings.Join(parts, ", ")
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// WriteText prints the figures, one per line.
func (r *Result) WriteText(w io.Writer) {
	for _, f := range r.figures() {
		fmt.Fprintf(w, "%-30s %s\n", f.name+":", f.value)
	}
}
