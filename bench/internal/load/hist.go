package load

import (
	"math/bits"
	"time"
)

// histBuckets covers 0 to about 2^37 µs (38 hours) with a relative error
// of at most 1/64.
const histBuckets = 2112

// Hist is a log-linear histogram of latencies in microseconds: exact below
// 128 µs, then 64 buckets per power of two. Its zero value is empty.
type Hist struct {
	counts [histBuckets]uint64
	total  uint64
	max    uint64
}

func bucketOf(us uint64) int {
	if us < 128 {
		return int(us)
	}
	e := bits.Len64(us) - 7 // us in [2^(e+6), 2^(e+7))
	i := e*64 + int(us>>uint(e))
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// lowerBound is the smallest value that falls in bucket i.
func lowerBound(i int) uint64 {
	if i < 128 {
		return uint64(i)
	}
	e := i/64 - 1
	return uint64(i%64+64) << uint(e)
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[bucketOf(us)]++
	h.total++
	if us > h.max {
		h.max = us
	}
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Count returns the number of recorded values.
func (h *Hist) Count() uint64 { return h.total }

// Quantile returns the value below which a fraction q of the recorded
// latencies fall: the top of its bucket, so it never understates.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := lowerBound(i+1) - 1
			if i+1 >= histBuckets || v > h.max {
				v = h.max
			}
			return time.Duration(v) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}
