package fanout_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fanout-go/fanout"
)

// The figures in the README's "What a session costs" and in WithPresence's
// documentation come from these benchmarks:
//
//	go test -run '^$' -bench 'IdleSession|HubSessions|PresenceJoin|PresenceChurn' -benchtime 1x .

// BenchmarkIdleSession measures the live heap an idle session without
// connections holds, per session, over 1,000 sessions.
func BenchmarkIdleSession(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []fanout.Option
	}{
		{"defaults", nil},
		{"defaults,10 events", nil},
		{"history=100", []fanout.Option{fanout.WithHistory(100)}},
		{"dedup=100", []fanout.Option{fanout.WithDedupWindow(100)}},
		{"history=100,dedup=100", []fanout.Option{fanout.WithHistory(100), fanout.WithDedupWindow(100)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 1000
			var perSession float64
			for range b.N {
				before := heapInUse()
				ss := make([]*fanout.Session, n)
				for i := range ss {
					s, err := fanout.NewSession("idle", bc.opts...)
					if err != nil {
						b.Fatal(err)
					}
					ss[i] = s
					if strings.Contains(bc.name, "10 events") {
						for j := range 10 {
							if _, err := s.Publish(context.Background(), fmt.Appendf(nil, `{"op":"insert","at":%d,"text":"hello"}`, j)); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				perSession = float64(heapInUse()-before) / n
				runtime.KeepAlive(ss)
				for _, s := range ss {
					_ = s.Close()
				}
			}
			b.ReportMetric(perSession, "heap-B/session")
		})
	}
}

// BenchmarkHubSessions measures 10,000 sessions of one Hub, each created
// by a server-side publish and given 10 events, at default options: the
// live heap per session, and the process's resident memory before and
// after (Linux only).
func BenchmarkHubSessions(b *testing.B) {
	const n = 10_000
	var perSession float64
	var rssBefore, rssAfter uint64
	for range b.N {
		h, err := fanout.NewHub()
		if err != nil {
			b.Fatal(err)
		}
		rssBefore = rss()
		before := heapInUse()
		ctx := context.Background()
		for i := range n {
			name := fmt.Sprint("doc-", i)
			for j := range 10 {
				if _, err := h.Publish(ctx, name, fmt.Appendf(nil, `{"op":"insert","at":%d,"text":"hello"}`, j)); err != nil {
					b.Fatal(err)
				}
			}
		}
		perSession = float64(heapInUse()-before) / n
		rssAfter = rss()
		_ = h.Close()
	}
	b.ReportMetric(perSession, "heap-B/session")
	if rssAfter > 0 {
		b.ReportMetric(mib(rssBefore), "rss-before-MiB")
		b.ReportMetric(mib(rssAfter), "rss-after-MiB")
	}
}

// rss is the process's resident set size, from /proc (0 elsewhere).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkPresenceJoin connects 1,000 connections to one session one
// after another, with presence on and off: with it on, every join is a
// message to every connection already there. Each op is the 1,000 joins,
// each waiting for its handshake, until the session has registered all.
func BenchmarkPresenceJoin(b *testing.B) {
	const n = 1000
	for _, presence := range []bool{true, false} {
		name := "presence=off"
		if presence {
			name = "presence=on"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s, err := fanout.NewSession("join", fanout.WithPresence(presence), fanout.WithMaxConnections(n))
				if err != nil {
					b.Fatal(err)
				}
				hs := httptest.NewServer(s)
				addr := strings.TrimPrefix(hs.URL, "http://")
				sinks := make([]*rawSink, 0, n)
				b.StartTimer()
				for range n {
					sinks = append(sinks, dialSink(b, addr, ""))
				}
				for s.Stats().Connections < n {
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				_ = s.Close()
				for _, k := range sinks {
					k.close()
				}
				hs.Close()
			}
		})
	}
}
