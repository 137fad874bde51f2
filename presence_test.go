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

// A host can end one connection, for example when access is revoked; the
// others stay.
func TestConnClose(t *testing.T) {
	sv := newServer(t, fanout.WithAuthenticate(authByHeader))
	a := dial(t, sv.url(""), user("alice"))
	b := dial(t, sv.url(""), user("bob"))
	for _, c := range sv.s.Conns() {
		if c.Identity().User == "bob" {
			require.Error(t, c.Close(1006, "not sendable"))
			require.NoError(t, c.Close(fanout.ClosePolicy, "access revoked"))
		}
	}
	assert.Equal(t, 1008, int(b.closed(t)))
	sv.publish(`"still here"`)
	assert.Equal(t, `"still here"`, string(a.nextOf(t, "event").Data))
}

func TestWelcomeOldest(t *testing.T) {
	sv := newServer(t, fanout.WithHistory(2))
	assert.Equal(t, uint64(0), dial(t, sv.url(""), nil).welcome.Oldest)
	for range 5 {
		sv.publish("1")
	}
	w := dial(t, sv.url(""), nil).welcome
	assert.Equal(t, uint64(4), w.Oldest)
	assert.Equal(t, uint64(5), w.Head)
}
