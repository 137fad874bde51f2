package client_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// A client that starts without a position, on a server that resumes by
// identity, goes on after what its identity processed last time.
func TestResumeByIdentity(t *testing.T) {
	sess, srv := newSession(t, fanout.WithResumeByIdentity(10),
		fanout.WithAuthenticate(func(r *http.Request) (fanout.Identity, error) {
			return fanout.Identity{User: r.Header.Get("X-User")}, nil
		}))
	ann := client.WithHeader(http.Header{"X-User": {"ann"}})
	var first collector
	c := dial(t, srv.WS("/"), ann, client.WithHandler(first.handle))
	publishN(t, sess, 5)
	first.waitLen(t, 5)
	require.Eventually(t, func() bool { seq, _ := sess.Acked("ann"); return seq == 5 }, waitFor, tick)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return sess.Stats().Connections == 0 }, waitFor, tick)
	publishN(t, sess, 3)

	var second collector
	c = dial(t, srv.WS("/"), ann, client.WithHandler(second.handle))
	seq, epoch := c.Position()
	require.Equal(t, uint64(5), seq)
	require.Equal(t, sess.Epoch(), epoch)
	second.waitLen(t, 3)
	requireContiguous(t, second.get(), 6, 8)
}
