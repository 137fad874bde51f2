package fanout_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// A client that disconnects and comes back with after/epoch gets exactly
// the events it missed, then live ones.
func TestResumeReplaysMissedEvents(t *testing.T) {
	sv := newServer(t)
	c := dial(t, sv.url(""), nil)
	for i := 1; i <= 5; i++ {
		sv.publish(fmt.Sprint(i))
	}
	evs := c.events(t, 3) // processed 1..3, then the connection drops
	require.NoError(t, c.ws.CloseNow())
	for i := 6; i <= 8; i++ {
		sv.publish(fmt.Sprint(i))
	}

	r := dial(t, sv.url(fmt.Sprintf("after=%d&epoch=%s", evs[2].Seq, c.welcome.Epoch)), nil)
	assert.True(t, r.welcome.Resumed)
	assert.Equal(t, uint64(8), r.welcome.Head)
	sv.publish("9")
	got := r.events(t, 6)
	for i, e := range got {
		assert.Equal(t, uint64(4+i), e.Seq)
		assert.Equal(t, fmt.Sprint(4+i), string(e.Data))
	}
	assert.Equal(t, uint64(1), sv.s.Stats().ResumesReplayed)
}

// A position that cannot be served gets resumed:false and delivery from head:
// an explicit reset, never a silent gap.
func TestResumeNotPossible(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		resumed bool
	}{
		{"older than the window", "after=5&epoch=EPOCH", false},
		{"oldest servable position", "after=6&epoch=EPOCH", true},
		{"at head", "after=10&epoch=EPOCH", true},
		{"beyond head", "after=11&epoch=EPOCH", false},
		{"other epoch", "after=8&epoch=0123456789abcdef", false},
		{"current epoch implied", "after=8", true},
		{"from the beginning, history gone", "after=0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithHistory(4))
			for i := 1; i <= 10; i++ { // retained: 7..10
				sv.publish(fmt.Sprint(i))
			}
			before := sv.s.Stats()
			c := dial(t, sv.url(strings.ReplaceAll(tt.query, "EPOCH", sv.s.Epoch())), nil)
			assert.Equal(t, tt.resumed, c.welcome.Resumed)
			assert.Equal(t, uint64(10), c.welcome.Head)
			after := sv.s.Stats()
			if tt.resumed {
				assert.Equal(t, before.ResumesReplayed+1, after.ResumesReplayed)
			} else {
				assert.Equal(t, before.ResumesReset+1, after.ResumesReset)
				sv.publish(`"live"`)
				e := c.nextOf(t, "event")
				assert.Equal(t, uint64(11), e.Seq, "delivery restarts after head")
				assert.Equal(t, `"live"`, string(e.Data))
			}
		})
	}
}

func TestResumeFromBeginning(t *testing.T) {
	sv := newServer(t)
	for i := 1; i <= 3; i++ {
		sv.publish(fmt.Sprint(i))
	}
	c := dial(t, sv.url("after=0"), nil)
	require.True(t, c.welcome.Resumed)
	evs := c.events(t, 3)
	assert.Equal(t, uint64(1), evs[0].Seq)
	assert.Equal(t, uint64(3), evs[2].Seq)
}

func TestStatsWindow(t *testing.T) {
	sv := newServer(t, fanout.WithHistory(3))
	st := sv.s.Stats()
	assert.Equal(t, uint64(0), st.Head)
	assert.Equal(t, uint64(0), st.Oldest)
	for i := 1; i <= 5; i++ {
		sv.publish(fmt.Sprint(i))
	}
	st = sv.s.Stats()
	assert.Equal(t, uint64(5), st.Head)
	assert.Equal(t, uint64(3), st.Oldest)
	assert.Equal(t, uint64(5), st.Published)
	assert.NotEmpty(t, st.Epoch)
}
