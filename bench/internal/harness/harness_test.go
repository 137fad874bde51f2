package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-go/fanout/bench/internal/peer"
)

// TestShortRun runs every server in this process with 10 clients, one
// common-load step and a two-step ladder each, and the replay where there
// is one: every message must reach every client, in order, with nobody
// disconnected.
func TestShortRun(t *testing.T) {
	out := t.TempDir()
	md := filepath.Join(out, "BENCHMARKS.md")
	if err := os.WriteFile(md, []byte("# Benchmarks\n\n"+beginMark+"\nold\n"+endMark+"\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range peer.All {
		names = append(names, p.Name)
	}
	cfg := Config{
		Mode: "test", Command: "go test", Ns: []int{10}, Payloads: []int{64}, Rounds: 1, Peers: names,
		StepDur: 300 * time.Millisecond, CommonDur: 300 * time.Millisecond, Factor: 2, Refine: 0,
		Common: map[int]float64{10: 1000}, MaxOffered: 2000,
		ReplayConns: 10, ReplayEvents: 100, History: 1000, WriteTimeout: 10 * time.Second,
		Parallel: 10, ReadGap: time.Millisecond, IdleSettle: 50 * time.Millisecond,
		Launch: InProcess, OutDir: out, SkipMachineDetection: true,
	}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != len(names) {
		t.Fatalf("%d runs, want %d", len(res.Runs), len(names))
	}
	for _, r := range res.Runs {
		if r.Err != "" {
			t.Errorf("%s: %s", r.Peer, r.Err)
			continue
		}
		if len(r.Payloads) != 1 || r.Payloads[0].Common == nil || len(r.Payloads[0].Steps) == 0 {
			t.Errorf("%s: steps missing: %+v", r.Peer, r.Payloads)
			continue
		}
		steps := append([]Step{*r.Payloads[0].Common}, r.Payloads[0].Steps...)
		for _, s := range steps {
			if s.Delivered != s.Expected || s.Expected == 0 || s.Lost != 0 || s.Dups != 0 || s.Dropped != 0 || s.Incomplete != 0 {
				t.Errorf("%s at %.0f/s: delivered %d of %d, lost %d, dups %d, dropped %d, incomplete %d (%s)",
					r.Peer, s.Offered, s.Delivered, s.Expected, s.Lost, s.Dups, s.Dropped, s.Incomplete, s.Why)
			}
		}
		p, _ := peer.Lookup(r.Peer)
		switch {
		case p.Replay && (r.Replay == nil || !r.Replay.OK):
			t.Errorf("%s: replay failed: %+v", r.Peer, r.Replay)
		case !p.Replay && r.Replay != nil:
			t.Errorf("%s: replay measured without replay", r.Peer)
		}
		if r.Idle == nil || r.Idle.GoroutinesPerConn <= 0 {
			t.Errorf("%s: idle figures missing: %+v", r.Peer, r.Idle)
		}
	}
	if err := Write(res, out, md); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{"# Benchmarks", "tail", "Maximum sustained", "fanout against the targets", ChartFile} {
		if !strings.Contains(text, want) {
			t.Errorf("BENCHMARKS.md lacks %q", want)
		}
	}
	if strings.Contains(text, "\nold\n") || strings.Count(text, beginMark) != 1 {
		t.Errorf("generated section not replaced:\n%s", text)
	}
	svg, err := os.ReadFile(filepath.Join(out, ChartFile))
	if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "<circle") {
		t.Errorf("chart: %v", err)
	}
}
