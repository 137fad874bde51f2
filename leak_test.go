package fanout_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/internal/fdlimit"
)

const (
	leakTotal = 10_000 // connections opened and closed after the warm-up
	leakBatch = 250    // connections open at once
	// With presence on, every join and leave is a message to every other
	// connection: n² messages a batch, so these batches are smaller.
	leakPresenceTotal = 1_000
	leakPresenceBatch = 50
	// leakHeapSlack is how far the heap may end above its baseline: room for
	// the runtime's own caches and the session's history of one small event
	// per batch, far below what leaked connections would hold (several KiB
	// each, so tens of MiB for 10,000).
	leakHeapSlack = 2 << 20
)

// TestLeakTenThousandConnections opens and closes 10,000 connections, in
// batches of 250 open at once, each closed in one of three ways (a close
// frame from the client, an abrupt TCP close, the host closing it with
// Conn.Close), and checks that goroutines and heap return to where they were.
// Then 1,000 more with presence on, so that joins and leaves flow too.
func TestLeakTenThousandConnections(t *testing.T) {
	require.NoError(t, fdlimit.Raise(4*leakBatch+256))
	t.Run("presence off", func(t *testing.T) {
		leakRun(t, leakTotal, leakBatch, fanout.WithPresence(false))
	})
	t.Run("presence on", func(t *testing.T) {
		leakRun(t, leakPresenceTotal, leakPresenceBatch, fanout.WithPresence(true))
	})
}

func leakRun(t *testing.T, total, batch int, opts ...fanout.Option) {
	sv := newServer(t, append(opts, fanout.WithMaxConnections(batch))...)
	addr := strings.TrimPrefix(sv.hs.URL, "http://")

	// One batch first, so that what is kept by design (buffer pools, the
	// HTTP server's state) is in the baseline.
	leakBatchRun(t, sv, addr, batch, 0)
	baseG := settledGoroutines(t, -1)
	baseHeap := heapInUse()

	var peakG int
	var peakHeap uint64
	start := time.Now()
	for b := 1; b <= total/batch; b++ {
		g, h := leakBatchRun(t, sv, addr, batch, b)
		peakG, peakHeap = max(peakG, g), max(peakHeap, h)
	}
	elapsed := time.Since(start)

	endG := settledGoroutines(t, baseG)
	endHeap := heapInUse()
	t.Logf("%d connections in %v; goroutines %d -> peak %d -> %d; heap %.1f MiB -> peak %.1f MiB -> %.1f MiB",
		total, elapsed.Round(time.Millisecond), baseG, peakG, endG, mib(baseHeap), mib(peakHeap), mib(endHeap))
	assert.LessOrEqual(t, endG, baseG)
	assert.Greater(t, peakG, baseG+batch, "the batches really held their connections")
	assert.LessOrEqual(t, endHeap, baseHeap+leakHeapSlack, "heap did not return to its baseline")
	st := sv.s.Stats()
	assert.Equal(t, 0, st.Connections)
	assert.Equal(t, uint64(total/batch+1), st.Head)
}

// leakBatchRun opens n connections, has each receive one event and
// closes them, a third each way. It returns the goroutines and heap in use
// while they were all open.
func leakBatchRun(t *testing.T, sv *server, addr string, n, batch int) (goroutines int, heap uint64) {
	t.Helper()
	conns := make([]*rawConn, 0, n)
	defer func() { // on failure
		for _, c := range conns {
			_ = c.nc.Close()
		}
	}()
	for range n {
		res, err := rawHandshake(addr, "", nil)
		require.NoError(t, err)
		require.NotNil(t, res.conn, "status %d: %s", res.status, res.body)
		conns = append(conns, res.conn)
	}
	seq := sv.publish(fmt.Sprintf(`{"batch":%d}`, batch))
	needle := fmt.Appendf(nil, `{"type":"event","seq":%d,`, seq)
	for i, c := range conns {
		require.NoError(t, c.skipUntil(needle, 10*time.Second), "connection %d", i)
	}
	goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = ms.HeapAlloc

	byHost := make(map[string]bool)
	for i, c := range conns {
		switch i % 3 {
		case 0:
			_, err := c.nc.Write(closeFrame(1000, "bye"))
			require.NoError(t, err)
		case 1:
			require.NoError(t, c.nc.Close())
		case 2:
			byHost[c.nc.LocalAddr().String()] = true
		}
	}
	for _, sc := range sv.s.Conns() {
		if byHost[sc.RemoteAddr()] {
			require.NoError(t, sc.Close(fanout.CloseGoingAway, "leak test"))
		}
	}
	for i, c := range conns {
		if i%3 == 1 {
			continue
		}
		code, err := c.closeCodeUntilEOF(10 * time.Second)
		require.NoError(t, err)
		want := 1000
		if i%3 == 2 {
			want = 1001
		}
		require.Equal(t, want, code, "connection %d", i)
		_ = c.nc.Close()
	}
	conns = nil
	waitConnections(t, sv.s, 0)
	return goroutines, heap
}

// settledGoroutines polls, inline (require.Eventually would add goroutines
// of its own), until at most want goroutines run, and returns how many do.
// With want < 0 it waits for the count to stop falling.
func settledGoroutines(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, stable := runtime.NumGoroutine(), 0
	for {
		n := runtime.NumGoroutine()
		switch {
		case want >= 0 && n <= want:
			return n
		case want < 0 && n == last:
			if stable++; stable == 20 {
				return n
			}
		default:
			stable = 0
		}
		last = n
		if time.Now().After(deadline) {
			if want < 0 {
				return n
			}
			require.FailNow(t, "goroutines did not return to their baseline", "%d running, want at most %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	for range 2 { // the second cycle frees what finalizers released in the first
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
