package fanout_test

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

	"github.com/fanout-go/fanout"
)

// rawSink is a WebSocket client reduced to the bytes: it performs the
// handshake by hand and then discards everything, so a benchmark's
// allocations and CPU are the server's.
type rawSink struct {
	conn net.Conn
	done chan struct{}
}

func dialSink(tb testing.TB, addr, query string) *rawSink {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(c, "GET /?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", query, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("handshake: %v %v", err, resp)
	}
	s := &rawSink{conn: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_, _ = br.WriteTo(io.Discard)
	}()
	return s
}

func (s *rawSink) close() {
	_ = s.conn.Close()
	<-s.done
}

// benchSession serves a session on loopback with n sinks connected.
func benchSession(b *testing.B, n int, opts ...fanout.Option) (*fanout.Session, func(query string) *rawSink) {
	b.Helper()
	opts = append([]fanout.Option{fanout.WithPresence(false), fanout.WithMaxConnections(n + 10)}, opts...)
	s, err := fanout.NewSession("bench", opts...)
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(s)
	addr := strings.TrimPrefix(hs.URL, "http://")
	var sinks []*rawSink
	dialOne := func(query string) *rawSink {
		k := dialSink(b, addr, query)
		sinks = append(sinks, k)
		return k
	}
	for range n {
		dialOne("")
	}
	for s.Stats().Connections < n {
		time.Sleep(time.Millisecond)
	}
	b.Cleanup(func() {
		_ = s.Close()
		for _, k := range sinks {
			k.close()
		}
		hs.Close()
	})
	return s, dialOne
}

func waitDelivered(s *fanout.Session, want uint64) {
	for s.Stats().Delivered < want {
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkPublish measures appending one 64-byte event with nobody
// connected.
func BenchmarkPublish(b *testing.B) {
	s, _ := fanout.NewSession("bench")
	defer s.Close()
	data := []byte(`{"payload":"` + strings.Repeat("x", 50) + `"}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Publish(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanout measures delivering 64-byte events to 1,000 loopback
// connections; one op is one publish, that is 1,000 deliveries.
func BenchmarkFanout(b *testing.B) {
	const n = 1000
	s, _ := benchSession(b, n, fanout.WithHistory(1<<16))
	data := []byte(`{"payload":"` + strings.Repeat("x", 50) + `"}`)
	ctx := context.Background()
	base := s.Stats().Delivered
	b.ReportAllocs()
	b.ResetTimer()
	published := 0
	for b.Loop() {
		if _, err := s.Publish(ctx, data); err != nil {
			b.Fatal(err)
		}
		published++
		if published%1024 == 0 { // stay well inside the history window
			waitDelivered(s, base+uint64(published*n))
		}
	}
	waitDelivered(s, base+uint64(published*n))
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(published*n), "ns/delivery")
}

// BenchmarkReplay measures a client resuming 1,000 events back: one op is
// one connection's handshake, welcome and replay.
func BenchmarkReplay(b *testing.B) {
	s, dial := benchSession(b, 0)
	ctx := context.Background()
	for range 1000 {
		if _, err := s.Publish(ctx, []byte(`{"payload":"`+strings.Repeat("x", 50)+`"}`)); err != nil {
			b.Fatal(err)
		}
	}
	q := "after=0&epoch=" + s.Epoch()
	b.ReportAllocs()
	var delivered uint64
	for b.Loop() {
		k := dial(q)
		delivered += 1000
		waitDelivered(s, delivered)
		k.close()
	}
}
