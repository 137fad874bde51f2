package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Over TLS the socket is not a plain file descriptor, so the pacer cannot
// write to it directly; the connection's writer sends its events instead,
// still every one, in order, several to a frame.
func TestTLSConnectionsGetEverything(t *testing.T) {
	s, err := fanout.NewSession("tls")
	require.NoError(t, err)
	hs := httptest.NewTLSServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(hs.URL, "https"),
		&websocket.DialOptions{HTTPClient: hs.Client()})
	require.NoError(t, err)
	defer ws.CloseNow()
	ws.SetReadLimit(-1)

	// Events published before the welcome come before this connection's
	// starting point; publish after it.
	_, frame, err := ws.Read(ctx)
	require.NoError(t, err)
	require.Contains(t, string(frame), `"type":"welcome"`)

	const n = 500
	go func() {
		for i := range n {
			_, _ = s.Publish(context.Background(), fmt.Appendf(nil, `{"i":%d}`, i))
		}
	}()
	want := uint64(1)
	for want <= n {
		_, frame, err := ws.Read(ctx)
		require.NoError(t, err, "at seq %d", want)
		for line := range strings.SplitSeq(string(frame), "\n") {
			var m struct {
				Type string `json:"type"`
				Seq  uint64 `json:"seq"`
			}
			if line == "" {
				continue
			}
			require.NoError(t, json.Unmarshal([]byte(line), &m))
			if m.Type == "event" {
				require.Equal(t, want, m.Seq)
				want++
			}
		}
	}
}
