package fanout_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Idle connections hold no writer goroutine: writers start when there is
// something to send and end after lingering idle. Events and heartbeats
// still reach every connection afterwards.
func TestIdleConnectionsHoldNoWriter(t *testing.T) {
	sv := newServer(t, fanout.WithHeartbeat(time.Hour, time.Minute), fanout.WithLinger(20*time.Millisecond))
	base := runtime.NumGoroutine()
	const n = 20
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = dial(t, sv.url(""), nil)
	}
	// Per connection: the server's reader (ServeHTTP) and the test client's
	// reader; per session, the pacer. No writers once they have lingered.
	const want = 2*n + 1
	waitGoroutines(t, base+want)

	for round := 1; round <= 2; round++ {
		seq := sv.publish(`"wake up"`)
		for _, c := range cs {
			assert.Equal(t, seq, c.nextOf(t, "event").Seq)
		}
		waitGoroutines(t, base+want)
	}
}

// waitGoroutines polls until at most want goroutines run. It polls inline:
// require.Eventually would add goroutines of its own to the count.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			require.FailNow(t, "goroutines did not return", "%d running, want at most %d", runtime.NumGoroutine(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
