package redislog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/redislog"
)

// Concurrent appends to one log share script calls: retries of one id
// that meet in a batch are appended once, and everything else gets one
// gap-free sequence.
func TestConcurrentAppendsBatched(t *testing.T) {
	needRedis(t, sharedAddr)
	c := newClient(t, sharedAddr)
	prefix := uniquePrefix()
	t.Cleanup(func() { deletePrefix(t, c, prefix) })
	l := newStore(t, c, redislog.Options{Prefix: prefix}).Log("batch")
	const n = 200
	var wg sync.WaitGroup
	results := make([]fanout.Appended, 2*n)
	for i := range n {
		wg.Go(func() {
			a, err := l.Append(context.Background(), "alice", "same", []byte(`{"same":true}`))
			require.NoError(t, err)
			results[i] = a
		})
		wg.Go(func() {
			a, err := l.Append(context.Background(), "", "", fmt.Appendf(nil, `{"i":%d}`, i))
			require.NoError(t, err)
			results[n+i] = a
		})
	}
	wg.Wait()
	firsts, seqs := 0, map[uint64]bool{}
	var sameSeq uint64
	for i, a := range results {
		if i < n {
			if !a.Duplicate {
				firsts++
			}
			if sameSeq == 0 {
				sameSeq = a.Seq
			}
			require.Equal(t, sameSeq, a.Seq, "every retry of one id gets one seq")
			continue
		}
		require.False(t, a.Duplicate)
		require.False(t, seqs[a.Seq], "seq %d given twice", a.Seq)
		seqs[a.Seq] = true
	}
	require.Equal(t, 1, firsts, "one id appended once")
	epoch, head, err := l.Head(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(n+1), head)
	recs, err := l.Read(context.Background(), epoch, 0, 1000)
	require.NoError(t, err)
	require.Len(t, recs, n+1)
}
