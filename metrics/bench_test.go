package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/metrics"
)

// BenchmarkFanoutMetrics is the library's BenchmarkFanout (64-byte events
// to 1,000 loopback connections; one op is one publish, that is 1,000
// deliveries) with Metrics as the session's observer: compare it with
// BenchmarkFanout in the module root for what the metrics cost.
func BenchmarkFanoutMetrics(b *testing.B) {
	const n = 1000
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	s, err := fanout.NewSession("bench", fanout.WithObserver(m), fanout.WithPresence(false),
		fanout.WithMaxConnections(n+10), fanout.WithHistory(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(s)
	addr := strings.TrimPrefix(hs.URL, "http://")
	var sinks []net.Conn
	done := make(chan struct{}, n)
	for range n {
		sinks = append(sinks, dialSink(b, addr, done))
	}
	for s.Stats().Connections < n {
		time.Sleep(time.Millisecond)
	}
	b.Cleanup(func() {
		_ = s.Close()
		for _, c := range sinks {
			_ = c.Close()
			<-done
		}
		hs.Close()
	})
	data := []byte(`{"payload":"` + strings.Repeat("x", 50) + `"}`)
	ctx := context.Background()
	wait := func(want uint64) {
		for s.Stats().Delivered < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	published := 0
	for b.Loop() {
		if _, err := s.Publish(ctx, data); err != nil {
			b.Fatal(err)
		}
		published++
		if published%1024 == 0 {
			wait(uint64(published * n))
		}
	}
	wait(uint64(published * n))
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(published*n), "ns/delivery")
}

// dialSink opens a WebSocket by hand and discards all it receives, so that
// the benchmark's costs are the server's.
func dialSink(tb testing.TB, addr string, done chan<- struct{}) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("handshake: %v %v", err, resp)
	}
	go func() {
		_, _ = br.WriteTo(io.Discard)
		done <- struct{}{}
	}()
	return c
}
