package fanout_test

import (
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Conn.Close takes the codes a server may send, and the client gets
// exactly that code; the others are refused and leave the connection open.
func TestConnCloseCodes(t *testing.T) {
	tests := []struct {
		code fanout.CloseCode
		ok   bool
	}{
		{fanout.CloseNormal, true},
		{fanout.CloseGoingAway, true},
		{fanout.ClosePolicy, true},
		{fanout.CloseInternalError, true},
		{fanout.CloseProtocolError, true},
		{fanout.CloseSlowConsumer, true},
		{4999, true},
		{fanout.CloseAbnormal, false}, // never sent on the wire
		{fanout.CloseTooBig, false},   // the server sends it when it reads too big a frame
		{1005, false},
		{1015, false},
		{999, false},
		{3000, false},
		{5000, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(int(tt.code)), func(t *testing.T) {
			sv := newServer(t)
			c := dial(t, sv.url(""), nil)
			conns := sv.s.Conns()
			require.Len(t, conns, 1)
			err := conns[0].Close(tt.code, "closed by the host")
			if !tt.ok {
				require.Error(t, err)
				sv.publish(`"still open"`)
				assert.Equal(t, `"still open"`, string(c.nextOf(t, "event").Data))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, websocket.StatusCode(tt.code), c.closed(t))
		})
	}
}
