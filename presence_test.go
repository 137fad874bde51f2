package fanout_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// Joins and leaves are gathered: a connection that joins and leaves within
// one interval is not announced at all; the others see a join and a leave
// once each, and nobody is told twice of anyone.
func TestPresenceCoalesced(t *testing.T) {
	sv := newServer(t, fanout.WithAuthenticate(authByHeader))
	a := dial(t, sv.url(""), user("alice"))
	// Joins and leaves at once: announced to alice within one interval,
	// or not at all.
	brief := dial(t, sv.url(""), user("brief"))
	require.NoError(t, brief.ws.CloseNow())
	b := dial(t, sv.url(""), user("bob"))
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 2 }, 5*time.Second, time.Millisecond)
	c := dial(t, sv.url(""), user("carol"))
	assert.Equal(t, 3, c.welcome.Present)
	sv.publish(`"marker"`)
	time.Sleep(300 * time.Millisecond) // more than two intervals
	sv.publish(`"end"`)

	seen := func(cl *client) (joins, leaves []string) {
		for {
			m := cl.next(t)
			switch m.Type {
			case "join":
				joins = append(joins, m.User)
			case "leave":
				leaves = append(leaves, m.User)
			case "event":
				if string(m.Data) == `"end"` {
					return joins, leaves
				}
			}
		}
	}
	joins, leaves := seen(a)
	assert.Subset(t, []string{"brief", "bob", "carol"}, joins)
	assert.Contains(t, joins, "bob")
	assert.Contains(t, joins, "carol")
	if slices.Contains(joins, "brief") {
		assert.Equal(t, []string{"brief"}, leaves)
	} else {
		assert.Empty(t, leaves)
	}
	joins, leaves = seen(b)
	assert.Equal(t, []string{"carol"}, joins, "bob knows alice from its welcome")
	assert.Empty(t, leaves)
	joins, leaves = seen(c)
	assert.Empty(t, joins)
	assert.Empty(t, leaves)
}

// The welcome's list is bounded; present counts everyone.
func TestWelcomePresenceBound(t *testing.T) {
	sv := newServer(t)
	addr := strings.TrimPrefix(sv.hs.URL, "http://")
	for range 300 {
		k := dialSink(t, addr, "")
		t.Cleanup(k.close)
	}
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 300 }, 10*time.Second, time.Millisecond)
	w := dial(t, sv.url(""), nil).welcome
	assert.Len(t, w.Presence, 256)
	assert.Equal(t, 301, w.Present)
	assert.Equal(t, w.Conn, w.Presence[255].Conn, "the list ends with the connection itself")
}
