package fanout_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// A client that stops reading for a while fills its socket; the rest of
// each frame the socket did not take is finished by the connection's
// writer. When the client reads again it gets every event once, in order,
// in well-formed frames, and a reading bystander is not held up meanwhile.
func TestPausedReaderGetsEverything(t *testing.T) {
	const n, size = 1200, 16 << 10 // about 20 MB, more than loopback socket buffers hold
	sv := newServer(t, fanout.WithHistory(2*n), fanout.WithMaxMessageSize(2*size))
	bystander := dial(t, sv.url(""), nil)
	res := rawDial(t, strings.TrimPrefix(sv.hs.URL, "http://"), "", nil)
	require.NotNil(t, res.conn, "status %d", res.status)
	paused := res.conn

	big := `"` + strings.Repeat("x", size) + `"`
	for i := 1; i <= n; i++ {
		sv.publish(big)
		require.Equal(t, uint64(i), bystander.nextOf(t, "event").Seq)
	}

	want := uint64(1)
	for _, m := range paused.rest {
		if m.Type == "event" {
			require.Equal(t, want, m.Seq)
			want++
		}
	}
	paused.rest = nil
	deadline := time.Now().Add(20 * time.Second)
	for want <= n {
		require.True(t, time.Now().Before(deadline), "stuck at seq %d", want)
		ev := paused.read(5 * time.Second)
		require.NoError(t, ev.err)
		require.False(t, ev.eof, "connection ended at seq %d", want)
		for _, m := range ev.msgs {
			if m.Type != "event" {
				continue
			}
			require.Equal(t, want, m.Seq, "gap or reorder")
			want++
		}
	}
	require.Zero(t, sv.s.Stats().SlowConsumerCloses)
}
