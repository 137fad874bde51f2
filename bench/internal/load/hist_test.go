package load

import (
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.02 {
			t.Errorf("q%.3f = %v, want %v to 2%% above", c.q, got, c.want)
		}
	}
	for us := uint64(0); us < 1<<30; us = us*3/2 + 1 {
		if i := bucketOf(us); lowerBound(i) > us || (i+1 < histBuckets && lowerBound(i+1) <= us) {
			t.Fatalf("%d µs in bucket %d [%d, %d)", us, i, lowerBound(i), lowerBound(i+1))
		}
	}
}

func TestFeedFragmentsAndSplitReads(t *testing.T) {
	p := &Pool{kind: Plain, reasons: map[string]int{}}
	c := &conn{fd: -1}
	msg := []byte(`{"bt":1,"bs":1,"p":"x"}` + "\n" + `{"bt":1,"bs":2,"p":"x"}`)
	// The message split over two frames, the frames split over reads.
	var wire []byte
	wire = append(wire, 0x01, byte(10))
	wire = append(wire, msg[:10]...)
	wire = append(wire, 0x80, byte(len(msg)-10))
	wire = append(wire, msg[10:]...)
	var pending []byte
	for _, b := range wire {
		pending = append(pending, b)
		pending = append([]byte(nil), p.feed(c, pending, 2)...)
	}
	if len(pending) != 0 || p.got != 2 || p.lost != 0 || c.next != 3 {
		t.Fatalf("pending %d, got %d, lost %d, next %d", len(pending), p.got, p.lost, c.next)
	}
}
