package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// anyUser lets a request without X-User in as the anonymous identity.
func anyUser(r *http.Request) (fanout.Identity, error) {
	return fanout.Identity{User: r.Header.Get("X-User")}, nil
}

// ackAndLeave acks seq on c, closes it and waits until the session has
// seen it go.
func ackAndLeave(t *testing.T, sv *server, c *client, seq uint64) {
	t.Helper()
	c.send(t, fmt.Sprintf(`{"type":"ack","seq":%d}`, seq))
	require.Eventually(t, func() bool {
		for _, cn := range sv.s.Conns() {
			if cn.Acked() == seq {
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, c.ws.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 0 }, 5*time.Second, time.Millisecond)
}

// A client that connects without a position resumes from what its
// identity acknowledged last, and its welcome says from where; other
// identities, the anonymous one and sessions without the option start
// after the head.
func TestResumeByIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []fanout.Option
		user    string // who comes back
		resumed bool
	}{
		{"same identity", []fanout.Option{fanout.WithResumeByIdentity(10)}, "ann", true},
		{"another identity", []fanout.Option{fanout.WithResumeByIdentity(10)}, "bob", false},
		{"anonymous", []fanout.Option{fanout.WithResumeByIdentity(10)}, "", false},
		{"option off", nil, "ann", false},
		{"position out of the window", []fanout.Option{fanout.WithResumeByIdentity(10), fanout.WithHistory(3)}, "ann", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv := newServer(t, append(tc.opts, fanout.WithAuthenticate(anyUser))...)
			first := "ann"
			if tc.user == "" {
				first = "" // the anonymous identity acks too
			}
			for range 3 {
				sv.publish(`1`)
			}
			c := dial(t, sv.url(""), user(first))
			sv.publish(`2`)
			sv.publish(`3`)
			evs := c.events(t, 2)
			ackAndLeave(t, sv, c, evs[0].Seq) // ann processed 4 of 5
			sv.publish(`4`)
			sv.publish(`5`)
			sv.publish(`6`)

			back := dial(t, sv.url(""), user(tc.user))
			require.Equal(t, tc.resumed, back.welcome.Resumed)
			if !tc.resumed {
				require.Nil(t, back.welcome.After)
				sv.publish(`7`)
				require.Equal(t, uint64(9), back.nextOf(t, "event").Seq)
				return
			}
			require.NotNil(t, back.welcome.After)
			require.Equal(t, uint64(4), *back.welcome.After)
			for i, e := range back.events(t, 4) {
				require.Equal(t, uint64(5+i), e.Seq)
			}
		})
	}
}

// With a snapshot, an identity whose position is gone gets the snapshot.
func TestResumeByIdentityGoneGetsSnapshot(t *testing.T) {
	var sv *server
	sv = newServer(t, fanout.WithAuthenticate(authByHeader), fanout.WithResumeByIdentity(10), fanout.WithHistory(2),
		fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
			return fanout.Snapshot{Seq: sv.s.Stats().Head, Data: json.RawMessage(`"s"`)}, nil
		}))
	sv.publish(`1`)
	c := dial(t, sv.url(""), user("ann"))
	require.Equal(t, uint64(1), c.nextOf(t, "snapshot").Seq)
	sv.publish(`2`)
	ackAndLeave(t, sv, c, c.nextOf(t, "event").Seq)
	for range 4 {
		sv.publish(`3`)
	}
	back := dial(t, sv.url(""), user("ann"))
	require.False(t, back.welcome.Resumed)
	require.True(t, back.welcome.Snapshot)
	require.Equal(t, uint64(6), back.nextOf(t, "snapshot").Seq)
}

// On a shared log the positions live in the log: an identity resumes on
// another node, and on a node started after the one it left.
func TestResumeByIdentitySharedLog(t *testing.T) {
	l, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	opts := []fanout.Option{fanout.WithAuthenticate(authByHeader), fanout.WithResumeByIdentity(10)}
	a := newNode(t, l, opts...)
	for range 3 {
		_, err := a.s.Publish(context.Background(), []byte(`1`))
		require.NoError(t, err)
	}
	c := dial(t, a.url("after=0"), user("ann"))
	ackAndLeave(t, a, c, c.events(t, 3)[1].Seq) // processed 2
	require.NoError(t, a.s.Close())

	b := newNode(t, l, opts...) // another node, or this one restarted
	back := dial(t, b.url(""), user("ann"))
	require.True(t, back.welcome.Resumed)
	require.Equal(t, uint64(2), *back.welcome.After)
	require.Equal(t, uint64(3), back.nextOf(t, "event").Seq)
}

func TestResumeByIdentityOption(t *testing.T) {
	_, err := fanout.NewSession("x", fanout.WithResumeByIdentity(-1))
	require.ErrorIs(t, err, fanout.ErrInvalidOption)
}
