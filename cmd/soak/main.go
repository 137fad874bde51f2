// Command soak holds one fanout Session under load while it injects faults,
// then checks that every client received every event exactly once and in
// order, that every publish took effect exactly once, and prints the
// figures.
//
//	go run ./cmd/soak                         # 1,000 clients for 60 s
//	go run ./cmd/soak -clients 300 -duration 20s
//	go run ./cmd/soak -report RELIABILITY.md -tests tests.json -fuzz fuzz.tsv
//
// Everything runs in one process over loopback: the session behind an
// http.Server, the Go clients of package client, and the faults: abrupt TCP
// closes on either side, the host closing connections with 1001 and 4001,
// clients whose handler stalls, and connections that never read (closed by
// the server as slow consumers). Then it measures delivery with and without
// a connection that never reads, and ends with a restart into a new epoch.
// It exits with status 1 if any check fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/fanout-go/fanout/internal/fdlimit"
)

func main() {
	cfg := DefaultConfig()
	flag.IntVar(&cfg.Clients, "clients", cfg.Clients, "Go clients, each checked event by event")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "chaos, then the stall benchmark")
	flag.IntVar(&cfg.Rate, "rate", cfg.Rate, "events per second, all publishers together")
	flag.IntVar(&cfg.ServerPubs, "server-publishers", cfg.ServerPubs, "goroutines publishing with Session.Publish")
	flag.IntVar(&cfg.ClientPubs, "client-publishers", cfg.ClientPubs, "clients that also publish with Client.Publish")
	flag.DurationVar(&cfg.KillEvery, "fault-every", cfg.KillEvery, "mean time between two injected connection faults")
	flag.DurationVar(&cfg.HandlerStalls, "stall-every", cfg.HandlerStalls, "mean time between two handler stalls")
	flag.IntVar(&cfg.RawStallers, "never-readers", cfg.RawStallers, "connections that never read, during chaos")
	flag.Float64Var(&cfg.AckLoss, "ack-loss", cfg.AckLoss, "share of client publishes whose connection closes between commit and ack, during chaos")
	flag.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "the session's write timeout")
	flag.IntVar(&cfg.History, "history", cfg.History, "the session's history window")
	flag.IntVar(&cfg.EventSize, "event-size", cfg.EventSize, "bytes of each event's data")
	flag.BoolVar(&cfg.Presence, "presence", cfg.Presence, "join and leave messages (n² messages under churn)")
	flag.BoolVar(&cfg.Restart, "restart", cfg.Restart, "end with a restart into a new epoch")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the fault schedule")
	report := flag.String("report", "", "write the reliability page (RELIABILITY.md) to this file")
	tests := flag.String("tests", "", "with -report: `go test -json` output to summarize")
	fuzz := flag.String("fuzz", "", "with -report: results written by scripts/fuzz.sh -o")
	multinode := flag.String("multinode", "", "with -report: the Markdown results of redislog's cmd/nodesoak -o")
	flag.Parse()

	if err := fdlimit.Raise(uint64(4*cfg.Clients + 1024)); err != nil {
		fmt.Fprintf(os.Stderr, "soak: open files limit: %v\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(2)
	}
	res.WriteText(os.Stdout)
	if *report != "" {
		if err := writeReport(*report, res, *tests, *fuzz, *multinode); err != nil {
			fmt.Fprintf(os.Stderr, "soak: report: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "soak: wrote %s\n", *report)
	}
	if !res.OK() {
		os.Exit(1)
	}
}
