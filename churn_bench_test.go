package fanout_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fanout-go/fanout"
)

// BenchmarkPresenceChurn is presence under churn: 3,000 connected readers
// that only read, 5,000 connections that join, read their welcome and
// reset, 32 at a time, and meanwhile one well-behaved client publishing
// every 10 ms; and, for reference, the same with presence off, and
// without the churn. It reports the publisher's ack latency (p50, p99, max) and
// the bytes each reader was sent during the churn (presence and the
// publisher's events), per reader:
//
//	go test -run '^$' -bench PresenceChurn -benchtime 1x .
func BenchmarkPresenceChurn(b *testing.B) {
	b.Run("churn", func(b *testing.B) { presenceChurn(b, true, true) })
	b.Run("churn,presence=off", func(b *testing.B) { presenceChurn(b, true, false) })
	b.Run("quiet", func(b *testing.B) { presenceChurn(b, false, true) })
}

// presenceChurn runs BenchmarkPresenceChurn; without churn, the publisher
// runs for 5 s among the readers alone, as a reference.
func presenceChurn(b *testing.B, churn, presence bool) {
	const readers, churners, parallel = 3000, 5000, 32
	for range b.N {
		s, err := fanout.NewSession("churn", fanout.WithMaxConnections(2*readers+churners), fanout.WithPresence(presence))
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(s)
		addr := strings.TrimPrefix(hs.URL, "http://")
		var read atomic.Int64
		sinks := make([]*countingSink, readers)
		for i := range sinks {
			sinks[i] = dialCountingSink(b, addr, &read)
		}
		for s.Stats().Connections < readers {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // the readers' own joins are sent
		read.Store(0)

		ctx, cancel := context.WithCancel(context.Background())
		ws, _, err := websocket.Dial(ctx, "ws://"+addr, nil)
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(-1)
		var lat []time.Duration
		pubDone := make(chan struct{})
		go func() { // the publisher: one publish, wait for its ack, every 10 ms
			defer close(pubDone)
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprint("p", i)
				start := time.Now()
				if ws.Write(ctx, websocket.MessageText, []byte(`{"type":"publish","id":"`+id+`","data":1}`)) != nil {
					return
				}
				for acked := false; !acked; {
					_, f, err := ws.Read(ctx)
					if err != nil {
						return
					}
					acked = strings.Contains(string(f), `"type":"ack","id":"`+id+`"`)
				}
				lat = append(lat, time.Since(start))
				time.Sleep(10 * time.Millisecond)
			}
		}()

		b.ResetTimer()
		var next atomic.Int64
		var wg sync.WaitGroup
		if !churn {
			time.Sleep(5 * time.Second)
		}
		for range parallel {
			if !churn {
				break
			}
			wg.Go(func() {
				for next.Add(1) <= churners {
					churnOnce(b, addr)
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		cancel()
		<-pubDone
		_ = ws.CloseNow()
		perReader := float64(read.Load()) / readers
		_ = s.Close()
		for _, k := range sinks {
			k.close()
		}
		hs.Close()

		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("no publish was acked")
		}
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
		b.ReportMetric(pct(0.5), "ack-p50-ms")
		b.ReportMetric(pct(0.99), "ack-p99-ms")
		b.ReportMetric(pct(1), "ack-max-ms")
		b.ReportMetric(perReader/1024, "KiB/reader")
	}
}

// churnOnce joins, reads the welcome's first bytes and resets.
func churnOnce(tb testing.TB, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Error(err)
		return
	}
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0) // reset, not a close handshake
		_ = c.Close()
	}()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Errorf("handshake: %v %v", err, resp)
		return
	}
	if _, err := br.ReadByte(); err != nil { // the welcome's frame
		tb.Error(err)
	}
}

// countingSink is a rawSink that counts what it reads.
type countingSink struct {
	conn net.Conn
	done chan struct{}
}

func dialCountingSink(tb testing.TB, addr string, n *atomic.Int64) *countingSink {
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
	k := &countingSink{conn: c, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		_, _ = br.WriteTo(byteCounter{n})
	}()
	return k
}

func (k *countingSink) close() {
	_ = k.conn.Close()
	<-k.done
}

// byteCounter counts the bytes written to it.
type byteCounter struct{ n *atomic.Int64 }

func (c byteCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}
