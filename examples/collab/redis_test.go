package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
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
		l, closeLog, err := openRedisLogPrefix(redisAddr, prefix)
		require.NoError(t, err)
		ts := startServer(t, nil, fanout.WithLog(l))
		t.Cleanup(closeLog) // after the server stops: cleanups run last in, first out
		servers = append(servers, ts)
	}
	for _, ts := range servers {
		require.Eventually(t, func() bool { return ts.app.session.Epoch() != "" }, 10*time.Second, 5*time.Millisecond)
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
