package fanout_test

import (
	"context"
	"fmt"

	"github.com/fanout-go/fanout"
)

// publishLog is an Observer that only wants publishes: it embeds
// BaseObserver for the rest.
type publishLog struct{ fanout.BaseObserver }

func (publishLog) Published(session string, origin fanout.Origin) {
	fmt.Printf("%s: an event from the %s\n", session, origin)
}

// An observer is told what a session does; package metrics is one that
// keeps Prometheus metrics.
func ExampleWithObserver() {
	s, err := fanout.NewSession("doc-42", fanout.WithObserver(publishLog{}))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	if _, err := s.Publish(context.Background(), []byte(`{"text":"hi"}`)); err != nil {
		panic(err)
	}
	// Output: doc-42: an event from the server
}
