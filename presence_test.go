package fanout_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

func TestPresence(t *testing.T) {
	var (
		mu           sync.Mutex
		joined, left []string
	)
	leftCh := make(chan struct{}, 1)
	sv := newServer(t, fanout.WithAuthenticate(authByHeader),
		fanout.WithOnJoin(func(c *fanout.Conn) {
			mu.Lock()
			defer mu.Unlock()
			joined = append(joined, c.Identity().User)
		}),
		fanout.WithOnLeave(func(c *fanout.Conn) {
			mu.Lock()
			defer mu.Unlock()
			left = append(left, c.Identity().User)
			assert.Error(t, c.CloseReason())
			leftCh <- struct{}{}
		}))
	a := dial(t, sv.url(""), user("alice"))
	require.Len(t, a.welcome.Presence, 1)
	assert.Equal(t, "alice", a.welcome.User)

	b := dial(t, sv.url(""), user("bob"))
	require.Len(t, b.welcome.Presence, 2)
	j := a.nextOf(t, "join")
	assert.Equal(t, "bob", j.User)
	assert.Equal(t, b.welcome.Conn, j.Conn)

	require.NoError(t, b.ws.CloseNow())
	l := a.nextOf(t, "leave")
	assert.Equal(t, "bob", l.User)
	<-leftCh
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"alice", "bob"}, joined)
	assert.Equal(t, []string{"bob"}, left)
}

func TestPresenceOff(t *testing.T) {
	sv := newServer(t, fanout.WithPresence(false))
	a := dial(t, sv.url(""), nil)
	assert.Empty(t, a.welcome.Presence)
	dial(t, sv.url(""), nil)
	sv.publish("1")
	assert.Equal(t, "event", a.next(t).Type, "no join message before the event")
}
