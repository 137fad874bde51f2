package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// TestRestartResetsClients restarts a session whose history is in memory:
// the old session shuts down, a new one serves the same address. A client
// that resumes from its old position is told resumed:false, through its
// reset callback, with the new head; it never receives the new session's
// events as if they followed its old position (a silent gap).
func TestRestartResetsClients(t *testing.T) {
	for _, tc := range []struct {
		name     string
		newHead  int // events the new session has before the client is back
		oldCount int // events the client processed before the restart
	}{
		{"new head below the old position", 2, 5},
		{"new head above the old position", 8, 3},
		{"new head equal to the old position", 4, 4},
		{"empty new session", 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := ln.Addr().String()
			old := serveSession(t, ln)

			var mu sync.Mutex
			var got []client.Event
			var resets []uint64
			c, err := client.Dial(t.Context(), "ws://"+addr+"/",
				client.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
				client.WithHandler(func(ev client.Event) {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, ev)
				}),
				client.WithOnReset(func(head uint64, _ string) {
					mu.Lock()
					defer mu.Unlock()
					resets = append(resets, head)
					got = append(got, client.Event{Seq: head, ID: "reset"})
				}))
			require.NoError(t, err)
			defer c.Close()
			for i := range tc.oldCount {
				_, err := old.s.Publish(t.Context(), fmt.Appendf(nil, `"old %d"`, i+1))
				require.NoError(t, err)
			}
			waitPosition(t, c, uint64(tc.oldCount))

			// Restart: shut the old session down (clients get 1001), then
			// serve a new one, with events of its own, on the same address.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			require.NoError(t, old.s.Shutdown(ctx))
			old.stop()
			s, err := fanout.NewSession("restart")
			require.NoError(t, err)
			for i := range tc.newHead {
				_, err := s.Publish(t.Context(), fmt.Appendf(nil, `"new %d"`, i+1))
				require.NoError(t, err)
			}
			ln, err = net.Listen("tcp", addr)
			require.NoError(t, err)
			serveExisting(t, s, ln)

			require.NotEqual(t, old.s.Epoch(), s.Epoch())
			waitFor(t, "the client's reset", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(resets) > 0
			})
			seq, err := s.Publish(t.Context(), []byte(`"after the restart"`))
			require.NoError(t, err)
			waitPosition(t, c, seq)

			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []uint64{uint64(tc.newHead)}, resets, "one explicit reset, to the new head")
			require.Len(t, got, tc.oldCount+2, "the old events, the reset, one new event: %+v", got)
			for i := range tc.oldCount {
				assert.Equal(t, fmt.Sprintf(`"old %d"`, i+1), string(got[i].Data))
			}
			assert.Equal(t, "reset", got[tc.oldCount].ID)
			last := got[tc.oldCount+1]
			assert.Equal(t, uint64(tc.newHead+1), last.Seq)
			assert.Equal(t, `"after the restart"`, string(last.Data), "nothing of the new epoch before the reset's head")
			pos, epoch := c.Position()
			assert.Equal(t, seq, pos)
			assert.Equal(t, s.Epoch(), epoch)
			assert.Equal(t, uint64(1), c.Stats().Resets)
		})
	}
}

type served struct {
	s    *fanout.Session
	stop func()
}

// serveSession serves a new session on ln until stop or the test's end.
func serveSession(t *testing.T, ln net.Listener) served {
	t.Helper()
	s, err := fanout.NewSession("restart")
	require.NoError(t, err)
	return served{s: s, stop: serveExisting(t, s, ln)}
}

func serveExisting(t *testing.T, s *fanout.Session, ln net.Listener) (stop func()) {
	t.Helper()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = s.Close()
			_ = srv.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting for "+what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitPosition polls until the client has processed seq.
func waitPosition(t *testing.T, c *client.Client, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pos, _ := c.Position(); pos >= seq {
			return
		}
		if time.Now().After(deadline) {
			pos, _ := c.Position()
			require.FailNow(t, "client did not get there", "at %d, want %d", pos, seq)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
