package fanout_test

import (
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fanout-go/fanout"
)

// The figures in the README's "What a session costs" and in WithPresence's
// documentation come from these benchmarks:
//
//	go test -run '^$' -bench 'IdleSession|PresenceJoin' -benchtime 1x .

// BenchmarkIdleSession measures the live heap an idle session without
// connections holds, per session, over 1,000 sessions.
func BenchmarkIdleSession(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []fanout.Option
	}{
		{"defaults", nil},
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
