package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// natsStream opens the log of a fresh stream on the NATS at NATS_URL (the
// usual loopback port by default) and deletes the stream at the end of
// the test. Without a server it skips, unless CI=true.
func natsStream(t *testing.T) (url, stream string) {
	t.Helper()
	url = os.Getenv("NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s: %v", url, err)
		}
		t.Skipf("no NATS at %s (scripts/services.sh starts one): %v", url, err)
	}
	stream = fmt.Sprintf("COLLABTEST_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
	})
	return url, stream
}

// Two servers started with -nats on one NATS serve the same notes in the
// same order, and a page moved from one to the other resumes without a
// reset.
func TestTwoServersOnNATS(t *testing.T) {
	url, stream := natsStream(t)
	var servers []*testServer
	for range 2 {
		store, closeLog, err := openNATSStore(context.Background(), url, stream)
		require.NoError(t, err)
		ts := startServerWith(t, nil, config{logs: store})
		t.Cleanup(closeLog) // after the server stops (cleanups run last first)
		// Until it has read the log's position the session answers 503.
		require.Eventually(t, func() bool { return ts.app.session().Epoch() != "" }, 10*time.Second, time.Millisecond)
		servers = append(servers, ts)
	}
	a, wa := dial(t, servers[0].wsURL("?user=a"))
	b, wb := dial(t, servers[1].wsURL("?user=b"))
	require.Equal(t, wa[0]["epoch"], wb[0]["epoch"], "one epoch on both servers")

	write(t, a, `{"type":"publish","id":"n1","data":{"text":"from a"}}`)
	write(t, b, `{"type":"publish","id":"n2","data":{"text":"from b"}}`)
	ea, eb := readUntil(t, a, 2, "event"), readUntil(t, b, 2, "event")
	for i := range 2 {
		assert.Equal(t, ea[i], eb[i], "event %d", i+1)
	}

	// The page on the first server moves to the second, after the first
	// event; it gets the second again, and is not reset.
	require.NoError(t, a.CloseNow())
	moved, welcome := dial(t, servers[1].wsURL(fmt.Sprintf("?user=a&after=1&epoch=%s", wa[0]["epoch"])))
	assert.Equal(t, true, welcome[0]["resumed"])
	var replayed []map[string]any
	for _, m := range welcome {
		if m["type"] == "event" {
			replayed = append(replayed, m)
		}
	}
	if len(replayed) == 0 {
		replayed = readUntil(t, moved, 1, "event")
	}
	assert.Equal(t, ea[1], replayed[0])
	sharedDocument(t, servers[0], servers[1])
}
