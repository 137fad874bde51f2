package fanout_test

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// A client's WebSocket ping is answered with a pong carrying its payload,
// sent by the connection's writer, while events keep flowing in frames of
// their own.
func TestClientPingAnswered(t *testing.T) {
	sv := newServer(t)
	res := rawDial(t, strings.TrimPrefix(sv.hs.URL, "http://"), "", nil)
	require.NotNil(t, res.conn, "status %d", res.status)
	c := res.conn
	for i := range 3 {
		payload := []byte{'p', byte('0' + i)}
		c.write(t, frameSpec{op: opPing, payload: payload}.encode())
		sv.publish(`"between pings"`)
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			op, _, got, err := c.readFrame()
			require.NoError(t, err)
			if op == opPong {
				require.True(t, bytes.Equal(payload, got), "pong %q for ping %q", got, payload)
				break
			}
			require.Equal(t, byte(opText), op)
		}
	}
}

// With more than one CPU a write round is split between goroutines; order
// and completeness hold as with one.
func TestOrderWithRoundsSplit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	testOrderManyClients(t, fanout.WithMinPart(2))
}
