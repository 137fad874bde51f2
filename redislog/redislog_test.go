package redislog_test

import (
	"testing"

	"github.com/fanout-go/fanout/logtest"
	"github.com/fanout-go/fanout/redislog"
)

func TestConformance(t *testing.T) {
	needRedis(t, sharedAddr)
	logtest.Run(t, logtest.Config{
		New: func(t *testing.T, window, dedup int) logtest.Backend {
			c := newClient(t, sharedAddr)
			prefix := uniquePrefix()
			t.Cleanup(func() { deletePrefix(t, c, prefix) })
			return &backend{t: t, client: c, opts: redislog.Options{Prefix: prefix, Window: window, DedupWindow: dedup}}
		},
		// Losing the data is deleting the keys: the machine's Redis is
		// shared, so no FLUSHALL here (the fault tests flush Redis
		// servers of their own).
		Lose: func(t *testing.T, b logtest.Backend) {
			rb := b.(*backend)
			deletePrefix(t, rb.client, rb.opts.Prefix)
		},
		DedupBeyondWindow: false,
	})
}
