package fanout_test

import (
	"context"
	"fmt"

	"github.com/fanout-go/fanout"
)

// Follow hands the host the committed events in order, from a position:
// the retained ones first, then live ones. Here the host folds them into
// its own state, a count, and stops once it has seen three.
func ExampleSession_Follow() {
	s, _ := fanout.NewSession("doc")
	defer s.Close()
	for _, data := range []string{`{"add":2}`, `{"add":3}`, `{"add":5}`} {
		_, _ = s.Publish(context.Background(), []byte(data))
	}

	ctx, stop := context.WithCancel(context.Background())
	err := s.Follow(ctx, "", 0, func(evs []fanout.Event) error {
		for _, e := range evs {
			fmt.Println(e.Seq, string(e.Data))
			if e.Seq == 3 {
				stop()
			}
		}
		return nil
	})
	fmt.Println(err)
	// Output:
	// 1 {"add":2}
	// 2 {"add":3}
	// 3 {"add":5}
	// context canceled
}
