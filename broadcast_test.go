package fanout_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// Every client sees every event once, in one gap-free order, while several
// server-side and client-side publishers run at once.
func TestOrderManyClientsConcurrentPublishers(t *testing.T) { testOrderManyClients(t) }

func testOrderManyClients(t *testing.T, opts ...fanout.Option) {
	const clients, serverPubs, perPub, clientPubs = 20, 4, 250, 2
	sv := newServer(t, append([]fanout.Option{fanout.WithPublishRate(1e6, 1e6)}, opts...)...)
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = dial(t, sv.url(""), nil)
	}
	var wg sync.WaitGroup
	for p := range serverPubs {
		wg.Go(func() {
			for i := range perPub {
				_, err := sv.s.Publish(context.Background(), fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i))
				assert.NoError(t, err)
			}
		})
	}
	for p := range clientPubs {
		pc := cs[p]
		wg.Go(func() {
			for i := range perPub {
				pc.send(t, fmt.Sprintf(`{"type":"publish","id":"c%d-%d","data":{"c":%d,"i":%d}}`, p, i, p, i))
			}
		})
	}
	wg.Wait()
	total := (serverPubs + clientPubs) * perPub
	// Client publishes are committed when the server reads them.
	require.Eventually(t, func() bool { return sv.s.Stats().Head == uint64(total) }, 10*time.Second, 5*time.Millisecond)

	var first []msg
	for i, c := range cs {
		evs := c.events(t, total)
		for j, e := range evs {
			require.Equal(t, uint64(j+1), e.Seq, "client %d: gap or reorder", i)
		}
		if first == nil {
			first = evs
			continue
		}
		for j := range evs {
			require.JSONEq(t, string(first[j].Data), string(evs[j].Data), "client %d sees another order", i)
		}
	}
	st := sv.s.Stats()
	assert.Equal(t, uint64(total), st.Published)
	assert.Equal(t, uint64(total*clients), st.Delivered)
}

func TestPublishRejectsBadData(t *testing.T) {
	s, err := fanout.NewSession("t", fanout.WithMaxMessageSize(256))
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	tests := []struct {
		name string
		data string
		want error
	}{
		{"not json", `{"a":`, fanout.ErrInvalidJSON},
		{"empty", ``, fanout.ErrInvalidJSON},
		{"raw control bytes", `"` + string(make([]byte, 300)) + `"`, fanout.ErrInvalidJSON},
		{"too large valid", strconv.Quote(string(bytesOf('x', 300))), fanout.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Publish(ctx, []byte(tt.data))
			require.ErrorIs(t, err, tt.want)
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Publish(cctx, []byte(`1`))
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, uint64(0), s.Stats().Head, "nothing was appended")
}

// Data with raw newlines between tokens is compacted so it cannot break the
// NDJSON framing.
func TestPublishCompactsNewlines(t *testing.T) {
	sv := newServer(t)
	c := dial(t, sv.url(""), nil)
	sv.publish("{\n  \"a\": [1,\n 2]\n}")
	e := c.nextOf(t, "event")
	assert.Equal(t, `{"a":[1,2]}`, string(e.Data))
}

// A client that stops reading is closed as a slow consumer while the others
// keep receiving everything.
func TestSlowConsumerClosedOthersUnaffected(t *testing.T) {
	sv := newServer(t, fanout.WithHistory(64), fanout.WithWriteTimeout(200*time.Millisecond))
	good := dial(t, sv.url(""), nil)

	ctx := context.Background()
	stalled, _, err := websocket.Dial(ctx, sv.url(""), nil)
	require.NoError(t, err)
	defer stalled.CloseNow()
	// Never read from stalled: its socket buffers fill, then its writer
	// times out or it falls out of the 64-event window.

	big := `"` + string(bytesOf('x', 16<<10)) + `"`
	const n = 400
	for i := 1; i <= n; i++ { // in step with the good client, so only the stalled one falls behind
		sv.publish(big)
		require.Equal(t, uint64(i), good.nextOf(t, "event").Seq)
	}
	require.Eventually(t, func() bool { return sv.s.Stats().SlowConsumerCloses == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 1 }, 5*time.Second, 10*time.Millisecond)
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// With more than one CPU a write round is split between goroutines; order
// and completeness hold as with one.
func TestOrderWithRoundsSplit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	testOrderManyClients(t, fanout.WithMinPart(2))
}
