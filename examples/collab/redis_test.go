package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

const redisAddr = "127.0.0.1:6379"

// Two servers started with -redis serve the same notes in the same order,
// and a page moved from one to the other resumes without a reset.
func TestTwoServersOnRedis(t *testing.T) {
	if c, err := net.DialTimeout("tcp", redisAddr, time.Second); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis at %s: %v (with CI=true a Redis test does not skip)", redisAddr, err)
		}
		t.Skipf("no Redis at %s: run scripts/services.sh", redisAddr)
	} else {
		c.Close()
	}
	prefix := fmt.Sprintf("collab-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { deleteKeys(t, prefix) })
	var servers []*testServer
	for range 2 {
		store, closeLog, err := openRedisStore(redisAddr, prefix)
		require.NoError(t, err)
		ts := startServerWith(t, nil, config{logs: store})
		t.Cleanup(closeLog) // after the server stops: cleanups run last in, first out
		servers = append(servers, ts)
	}
	for _, ts := range servers {
		require.Eventually(t, func() bool { return ts.app.session().Epoch() != "" }, 10*time.Second, 5*time.Millisecond)
	}
	a, wa := dial(t, servers[0].wsURL("?user=ann"))
	b, wb := dial(t, servers[1].wsURL("?user=bob"))
	require.Equal(t, wa[0]["epoch"], wb[0]["epoch"])
	for i := range 3 {
		write(t, a, fmt.Sprintf(`{"type":"publish","id":"a%d","data":{"text":"from ann %d"}}`, i, i))
		write(t, b, fmt.Sprintf(`{"type":"publish","id":"b%d","data":{"text":"from bob %d"}}`, i, i))
	}
	ea, eb := readUntil(t, a, 6, "event"), readUntil(t, b, 6, "event")
	for i := range 6 {
		require.Equal(t, float64(i+1), ea[i]["seq"])
		require.Equal(t, ea[i]["seq"], eb[i]["seq"])
		require.Equal(t, ea[i]["data"], eb[i]["data"])
	}
	// ann's page moves to the other server after the third note.
	_ = a.CloseNow()
	_, moved := dial(t, servers[1].wsURL(fmt.Sprintf("?user=ann&after=3&epoch=%s", wa[0]["epoch"])))
	require.Equal(t, true, moved[0]["resumed"])
	sharedDocument(t, servers[0], servers[1])
}

func deleteKeys(t *testing.T, prefix string) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Do(ctx, c.B().Keys().Pattern("{"+prefix+":*").Build()).AsStrSlice()
	require.NoError(t, err)
	if len(keys) > 0 {
		require.NoError(t, c.Do(ctx, c.B().Del().Key(keys...).Build()).Error())
	}
}

// sharedDocument checks that a document other than the default one is on
// the shared log too: a note added to it on the first server reaches a new
// page of it on the second, as seq 1 of its own sequence.
func sharedDocument(t *testing.T, first, second *testServer) {
	t.Helper()
	a, _ := dialSynced(t, "ws://"+first.addr+"/d/plan/ws?user=ann")
	write(t, a, `{"type":"publish","id":"p1","data":{"text":"in plan"}}`)
	require.EqualValues(t, 1, readUntil(t, a, 1, "ack")[0]["seq"], "the document's own sequence")
	require.Eventually(t, func() bool {
		b, msgs := dialSynced(t, "ws://"+second.addr+"/d/plan/ws?user=bob")
		defer b.CloseNow()
		require.Equal(t, "plan", msgs[0]["session"])
		if msgs[0]["head"] != float64(1) {
			return false // the second server has not read the log's head yet
		}
		if len(msgs) == 1 {
			msgs = append(msgs, readMessages(t, b)...)
		}
		require.Equal(t, "snapshot", msgs[1]["type"])
		var texts []any
		for _, n := range msgs[1]["data"].(map[string]any)["notes"].([]any) {
			texts = append(texts, n.(map[string]any)["data"].(map[string]any)["text"])
		}
		if msgs[1]["seq"] == float64(0) { // the notes lag: the note follows as an event
			texts = append(texts, readUntil(t, b, 1, "event")[0]["data"].(map[string]any)["text"])
		}
		require.Equal(t, []any{"in plan"}, texts)
		return true
	}, 10*time.Second, 20*time.Millisecond)
}

// dialSynced dials a document on a shared log: a session the hub has just
// created answers 503 until it has read the log's position, and a page
// tries again, as this does.
func dialSynced(t *testing.T, url string) (*websocket.Conn, []map[string]any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, resp, err := websocket.Dial(ctx, url, nil)
		cancel()
		if err == nil {
			t.Cleanup(func() { _ = c.CloseNow() })
			return c, readMessages(t, c)
		}
		require.True(t, resp != nil && resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline), "%v", err)
		time.Sleep(20 * time.Millisecond)
	}
}
