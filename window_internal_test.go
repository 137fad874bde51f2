package fanout

import (
	"fmt"
	"testing"
)

// The history ring grows with use and then wraps: every retained event is
// found by its seq, whatever the window and however many were appended.
func TestHistoryGrowsThenWraps(t *testing.T) {
	for _, window := range []int{1, 2, 3, 5, 8, 100} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			h := newHistory(window)
			if h.canServe(1) || !h.canServe(0) || h.oldest() != 0 {
				t.Fatalf("empty history: canServe(0)=%v canServe(1)=%v oldest=%d", h.canServe(0), h.canServe(1), h.oldest())
			}
			for n := uint64(1); n <= uint64(3*window+2); n++ {
				if got := h.append([]byte(fmt.Sprint(n))); got != n {
					t.Fatalf("append %d returned seq %d", n, got)
				}
				if len(h.ring) > window || cap(h.ring) > window {
					t.Fatalf("ring len %d cap %d past the window %d", len(h.ring), cap(h.ring), window)
				}
				wantFloor := uint64(0)
				if n > uint64(window) {
					wantFloor = n - uint64(window)
				}
				if h.floor() != wantFloor || h.oldest() != wantFloor+1 {
					t.Fatalf("after %d: floor %d oldest %d, want %d", n, h.floor(), h.oldest(), wantFloor)
				}
				for s := wantFloor + 1; s <= n; s++ {
					if e := h.at(s); e.seq != s || string(e.wire) != fmt.Sprint(s) {
						t.Fatalf("after %d: at(%d) is seq %d %q", n, s, e.seq, e.wire)
					}
				}
				if h.canServe(wantFloor-min(wantFloor, 1)) && wantFloor > 0 {
					t.Fatalf("after %d: serves %d, below the floor", n, wantFloor-1)
				}
			}
		})
	}
}

// The dedup window remembers exactly the last window ids, growing until it
// holds that many.
func TestDedupGrowsThenForgetsOldest(t *testing.T) {
	for _, window := range []int{1, 2, 3, 7, 64} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			d := newDedup(window)
			if _, ok := d.lookup(dedupKey{user: "u", id: "0"}); ok {
				t.Fatal("empty window found an id")
			}
			total := 3*window + 1
			for i := range total {
				d.remember(dedupKey{user: "u", id: fmt.Sprint(i)}, uint64(i+1))
				if len(d.order) > window || cap(d.order) > window || len(d.seqs) > window {
					t.Fatalf("window %d holds %d keys, ring cap %d", window, len(d.seqs), cap(d.order))
				}
			}
			for i := range total {
				seq, ok := d.lookup(dedupKey{user: "u", id: fmt.Sprint(i)})
				want := i >= total-window
				if ok != want || (ok && seq != uint64(i+1)) {
					t.Fatalf("id %d: found %v (seq %d), want found %v", i, ok, seq, want)
				}
			}
		})
	}
}
