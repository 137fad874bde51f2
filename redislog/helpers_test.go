package redislog_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/redislog"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(nodeEnv); addr != "" {
		runNodeProcess(addr, os.Getenv(nodePrefixEnv))
		return
	}
	goleak.VerifyTestMain(m)
}

// sharedAddr is the machine's Redis. Tests use keys under a prefix of
// their own and delete them afterwards.
const sharedAddr = "127.0.0.1:6379"

// needRedis skips the test when nothing answers at addr, unless CI=true,
// where a Redis test never skips.
func needRedis(t testing.TB, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("Redis at %s: %v (with CI=true a Redis test does not skip; scripts/services.sh starts it)", addr, err)
	}
	t.Skipf("no Redis at %s (%v): run scripts/services.sh", addr, err)
}

// newClient returns a client of the Redis at addr, closed at cleanup.
func newClient(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{addr},
		DisableCache: true,
		Dialer:       net.Dialer{Timeout: time.Second},
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

var prefixSeq atomic.Uint64

// uniquePrefix is a key prefix no other run uses.
func uniquePrefix() string {
	return fmt.Sprintf("fanout-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), prefixSeq.Add(1))
}

// deletePrefix deletes every key under prefix.
func deletePrefix(t testing.TB, c rueidis.Client, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match("{"+prefix+":*").Count(1000).Build()).AsScanEntry()
		require.NoError(t, err)
		if len(e.Elements) > 0 {
			require.NoError(t, c.Do(ctx, c.B().Del().Key(e.Elements...).Build()).Error())
		}
		if e.Cursor == 0 {
			return
		}
		cursor = e.Cursor
	}
}

// newStore returns a store on client, closed at cleanup.
func newStore(t testing.TB, c rueidis.Client, opts redislog.Options) *redislog.Store {
	t.Helper()
	s, err := redislog.New(c, opts)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// backend is a prefix on one Redis: each Open is a node with a store of
// its own, as a fresh process would have.
type backend struct {
	t      testing.TB
	client rueidis.Client
	opts   redislog.Options
	mu     sync.Mutex
}

func (b *backend) Open(t testing.TB, name string) fanout.Log {
	b.mu.Lock()
	defer b.mu.Unlock()
	return newStore(t, b.client, b.opts).Log(name)
}
