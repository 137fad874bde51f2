package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// A page that starts without a position, or whose resume cannot be served,
// gets the notes so far in a snapshot, then exactly the notes after it.
func TestNotesSnapshot(t *testing.T) {
	ts := startServer(t, nil, fanout.WithHistory(3))
	writer, _ := dial(t, ts.wsURL("?user=ann"))
	for i := range 5 { // one at a time: with 3 events of history, a burst would leave the writer behind
		write(t, writer, fmt.Sprintf(`{"type":"publish","id":"n%d","data":{"text":"note %d"}}`, i, i))
		readUntil(t, writer, 2, "ack", "event")
	}
	require.Eventually(t, func() bool {
		s, err := ts.app.notesOf(defaultDoc).snapshot(t.Context())
		return err == nil && s.Seq == 5
	}, 5*time.Second, time.Millisecond)

	published := 5
	for _, tc := range []struct{ name, query string }{
		{"new tab", "?user=bob"},
		{"resume out of the history", "?user=bob&after=1&epoch=" + ts.app.session().Epoch()},
		{"resume of another epoch", "?user=bob&after=5&epoch=before-a-restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, msgs := dial(t, ts.wsURL(tc.query))
			require.Equal(t, "welcome", msgs[0]["type"])
			require.Equal(t, true, msgs[0]["snapshot"])
			if len(msgs) == 1 {
				msgs = append(msgs, readMessages(t, c)...)
			}
			snap := msgs[1]
			require.Equal(t, "snapshot", snap["type"])
			require.EqualValues(t, published, snap["seq"])
			notes := snap["data"].(map[string]any)["notes"].([]any)
			require.Len(t, notes, published, "all the notes, beyond the 3 events of history")
			for i, n := range notes[:5] {
				n := n.(map[string]any)
				require.EqualValues(t, i+1, n["seq"])
				require.Equal(t, "ann", n["from"])
				require.Equal(t, fmt.Sprintf("n%d", i), n["id"])
				require.Equal(t, fmt.Sprintf("note %d", i), n["data"].(map[string]any)["text"])
			}

			write(t, writer, fmt.Sprintf(`{"type":"publish","id":"t%d","data":{"text":"after"}}`, published))
			published++
			ev := readUntil(t, c, 1, "event")[0]
			require.EqualValues(t, published, ev["seq"], "the first event is the one after the snapshot")
			require.Eventually(t, func() bool {
				s, err := ts.app.notesOf(defaultDoc).snapshot(t.Context())
				return err == nil && s.Seq == uint64(published)
			}, 5*time.Second, time.Millisecond)
		})
	}
}
