package fanout_test

import (
	"context"
	"testing"

	"github.com/fanout-go/fanout"
)

// BenchmarkFollow measures what a follower costs per event: reading the
// window and decoding each event for the host.
func BenchmarkFollow(b *testing.B) {
	s, err := fanout.NewSession("bench", fanout.WithHistory(b.N+1))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := []byte(`{"text":"a note of some length","at":"2026-01-01T00:00:00Z"}`)
	for range b.N {
		if _, err := s.Publish(context.Background(), data); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	_ = s.Follow(ctx, "", 0, func(evs []fanout.Event) error {
		n += len(evs)
		if n >= b.N {
			cancel()
		}
		return nil
	})
}
