package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// twoNodes starts two sessions on one shared log, each behind a server of
// its own: two nodes of one session.
func twoNodes(t *testing.T) (a, b *fanout.Session, sa, sb *server) {
	t.Helper()
	l, err := fanout.NewMemoryLog(1000, 1000)
	require.NoError(t, err)
	a, sa = newSession(t, fanout.WithLog(l))
	b, sb = newSession(t, fanout.WithLog(l))
	require.Eventually(t, func() bool { return a.Epoch() != "" && b.Epoch() != "" }, 5*time.Second, time.Millisecond)
	return a, b, sa, sb
}

// stopServer makes s unreachable: its connections dropped, its listener
// closed.
func stopServer(s *server) {
	s.Kill()
	s.Listener.Close()
	s.Kill()
}

// A client whose server goes away moves to the next URL and resumes
// there after the last event it received: every event once, in order, no
// reset; a publish made while no server answered is acked by the other.
func TestFailoverToNextURL(t *testing.T) {
	a, b, sa, sb := twoNodes(t)
	var got collector
	c := dial(t, sa.WS("/"), client.WithHandler(got.handle), client.WithFailover(sb.WS("/")),
		client.WithBackoff(5*time.Millisecond, 50*time.Millisecond))
	publishN(t, a, 10)
	got.waitLen(t, 10)

	stopServer(sa)
	pub := make(chan uint64, 1)
	go func() {
		seq, err := c.Publish(context.Background(), []byte(`{"during":"failover"}`))
		if err != nil {
			t.Error(err)
		}
		pub <- seq
	}()
	publishN(t, b, 10)
	var seq uint64
	select {
	case seq = <-pub:
	case <-time.After(10 * time.Second):
		t.Fatal("the publish was not acked after the failover")
	}
	got.waitLen(t, 21)
	requireContiguous(t, got.get(), 1, 21)
	require.Equal(t, `{"during":"failover"}`, string(got.get()[seq-1].Data))
	st := c.Stats()
	require.Zero(t, st.Resets)
	require.NotZero(t, st.Failovers)
	require.Equal(t, uint64(21), b.Stats().Head)
}

// Dial moves on from a URL that does not answer.
func TestFailoverOnDial(t *testing.T) {
	a, _, sa, sb := twoNodes(t)
	stopServer(sa)
	var got collector
	c := dial(t, sa.WS("/"), client.WithHandler(got.handle), client.WithFailover(sb.WS("/")))
	_, err := a.Publish(context.Background(), []byte(`{}`))
	require.NoError(t, err)
	got.waitLen(t, 1)
	require.Equal(t, uint64(1), c.Stats().Failovers)
}
