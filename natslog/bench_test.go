package natslog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/natslog"
)

// The benchmarks run against the shared NATS (NATS_URL), each on a stream
// of its own:
//
//	cd natslog && go test -run '^$' -bench . -benchtime 5s

// benchStore is one node's store on the stream of opts.
func benchStore(b *testing.B, opts natslog.Options) *natslog.Store {
	b.Helper()
	_, js := connect(b, natsURL())
	st, err := natslog.New(context.Background(), js, opts)
	require.NoError(b, err)
	return st
}

// benchSession is a session on the stream of opts, as one node serves it.
func benchSession(b *testing.B, opts natslog.Options, name string) *fanout.Session {
	b.Helper()
	return storeSession(b, benchStore(b, opts), name)
}

// storeSession is a session of the node whose store is st.
func storeSession(b *testing.B, st *natslog.Store, name string) *fanout.Session {
	b.Helper()
	s, err := fanout.NewSession(name, fanout.WithLog(st.Log(name)), fanout.WithPresence(false))
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	require.Eventually(b, func() bool { return s.Epoch() != "" }, 10*time.Second, time.Millisecond)
	return s
}

func benchOpts(b *testing.B) natslog.Options {
	_, js := connect(b, natsURL())
	return natslog.Options{Stream: uniqueStream(b, js)}
}

// publishParallel publishes b.N events from 64 goroutines, each on the
// session pick gives it, and reports publishes per second.
func publishParallel(b *testing.B, pick func(i int) *fanout.Session) {
	var next atomic.Int64
	data := []byte(`{"text":"a note of some sixty-four bytes, as a chat line would be"}`)
	b.SetParallelism(max(1, 64/max(1, testingProcs())))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		s := pick(int(next.Add(1)))
		for pb.Next() {
			if _, err := s.Publish(context.Background(), data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "publishes/s")
}

// Publishes through one node into one session, 64 publishers at once.
func BenchmarkPublishOneSession(b *testing.B) {
	s := benchSession(b, benchOpts(b), "one")
	publishParallel(b, func(int) *fanout.Session { return s })
}

// Publishes through one node (one store, one connection) spread over
// 1,000 sessions, each followed by the node, 64 publishers at once.
func BenchmarkPublish1000Sessions(b *testing.B) {
	st := benchStore(b, benchOpts(b))
	ss := make([]*fanout.Session, 1000)
	var wg sync.WaitGroup
	for i := range ss {
		wg.Go(func() { ss[i] = storeSession(b, st, fmt.Sprintf("s%d", i)) })
		if i%50 == 49 {
			wg.Wait()
		}
	}
	wg.Wait()
	var turn atomic.Int64
	b.SetParallelism(max(1, 64/max(1, testingProcs())))
	data := []byte(`{"text":"a note of some sixty-four bytes, as a chat line would be"}`)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s := ss[turn.Add(1)%int64(len(ss))]
			if _, err := s.Publish(context.Background(), data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "publishes/s")
}

// Publish-to-delivery latency across nodes at a light load: 200 events/s
// published on one node, received by a Go client of another.
func BenchmarkCrossNodeLatency(b *testing.B) {
	opts := benchOpts(b)
	a, other := benchSession(b, opts, "lat"), benchSession(b, opts, "lat")
	hs := startHTTP(b, other)
	lat := make(chan time.Duration, b.N+1)
	c, err := client.Dial(context.Background(), hs,
		client.WithHandler(func(ev client.Event) {
			var m struct{ T int64 }
			if json.Unmarshal(ev.Data, &m) == nil && m.T > 0 {
				lat <- time.Since(time.Unix(0, m.T))
			}
		}))
	require.NoError(b, err)
	defer c.Close()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		if _, err := a.Publish(context.Background(), fmt.Appendf(nil, `{"t":%d}`, time.Now().UnixNano())); err != nil {
			b.Fatal(err)
		}
	}
	var ds []time.Duration
	for range b.N {
		select {
		case d := <-lat:
			ds = append(ds, d)
		case <-time.After(10 * time.Second):
			b.Fatalf("received %d of %d", len(ds), b.N)
		}
	}
	slices.Sort(ds)
	q := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, "max-ms")
}
