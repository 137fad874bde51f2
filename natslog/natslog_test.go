package natslog_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/logtest"
	"github.com/fanout-go/fanout/natslog"
)

func TestMain(m *testing.M) {
	if os.Getenv(envNodeNATS) != "" {
		runNode()
		return
	}
	goleak.VerifyTestMain(m)
}

// natsURL is the shared NATS server the tests use: NATS_URL, or the
// usual loopback port.
func natsURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// connect connects to url, closing the connection at the end of the test.
// Without a server it skips the test, unless CI=true, where it fails.
func connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}) // faults are the tests' own
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(2 * time.Second), quiet}, opts...)...)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s: %v", url, err)
		}
		t.Skipf("no NATS at %s (scripts/services.sh starts one): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

var streamSeq atomic.Uint64

// uniqueStream is a stream name no other test uses; the stream is deleted
// at the end of the test.
func uniqueStream(t testing.TB, js jetstream.JetStream) string {
	name := fmt.Sprintf("FANOUTTEST_%d_%d", time.Now().UnixNano(), streamSeq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	})
	return name
}

// backend is one stream; every Open is a node: a connection and a Store
// of its own.
type backend struct {
	url  string
	opts natslog.Options
	js   jetstream.JetStream // the test's own, to delete the stream
}

func (b *backend) Open(t testing.TB, name string) fanout.Log {
	_, js := connect(t, b.url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natslog.New(ctx, js, b.opts)
	require.NoError(t, err)
	return s.Log(name)
}

func newBackend(t *testing.T, window int) *backend {
	_, js := connect(t, natsURL())
	return &backend{url: natsURL(), js: js, opts: natslog.Options{
		Stream: uniqueStream(t, js),
		Window: window,
		Probe:  100 * time.Millisecond,
	}}
}

func TestConformance(t *testing.T) {
	logtest.Run(t, logtest.Config{
		New: func(t *testing.T, window, _ int) logtest.Backend {
			return newBackend(t, window)
		},
		Lose: func(t *testing.T, b logtest.Backend) {
			nb := b.(*backend)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, nb.js.DeleteStream(ctx, nb.opts.Stream))
		},
		// The dedup window is a duration (two minutes by default), not a
		// count: a retry after more publishes than the suite's count
		// still gets its original seq.
		DedupBeyondWindow: true,
	})
}
