package main

import (
	"math"
	"sync/atomic"
	"time"
)

// bucketsPerDecade sets the histogram's resolution: 20 buckets per factor
// of ten, so a quantile is known to within 12%.
const (
	bucketsPerDecade = 20
	histBuckets      = 11 * bucketsPerDecade // 1 ns to 100 s
)

// hist is a lock-free latency histogram on a log scale, of the events
// published since a moment.
type hist struct {
	since  atomic.Int64 // unix nanoseconds: events published earlier are not counted
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func (h *hist) add(d time.Duration) {
	ns := max(int64(d), 1)
	i := int(math.Log10(float64(ns)) * bucketsPerDecade)
	h.counts[min(max(i, 0), histBuckets-1)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *hist) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= want {
			return min(time.Duration(math.Pow(10, float64(i+1)/bucketsPerDecade)), time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
