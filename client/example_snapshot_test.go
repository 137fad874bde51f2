package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// The server application keeps its state (here the sum of the numbers
// published) by following the session, and serves it as the snapshot; a
// new client gets the state, then exactly the events after it.
func ExampleWithOnSnapshot() {
	var mu sync.Mutex
	var state struct {
		Seq uint64 `json:"-"`
		Sum int    `json:"sum"`
	}
	sess, _ := fanout.NewSession("sums", fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		data, err := json.Marshal(state)
		return fanout.Snapshot{Seq: state.Seq, Data: data}, err
	}))
	srv := httptest.NewServer(sess)
	defer srv.Close()
	defer sess.Close()

	ctx := context.Background()
	caughtUp := make(chan struct{}, 1)
	go sess.Follow(ctx, "", 0, func(evs []fanout.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			var n int
			_ = json.Unmarshal(e.Data, &n)
			state.Seq, state.Sum = e.Seq, state.Sum+n
		}
		if state.Seq == 3 {
			caughtUp <- struct{}{}
		}
		return nil
	})
	for _, n := range []string{"1", "2", "3"} {
		_, _ = sess.Publish(ctx, []byte(n))
	}
	<-caughtUp // so that the output does not depend on timing

	done := make(chan struct{})
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"),
		client.WithOnSnapshot(func(s client.Snapshot) {
			fmt.Printf("snapshot at %d: %s\n", s.Seq, s.Data)
		}),
		client.WithHandler(func(ev client.Event) {
			fmt.Printf("event %d: %s\n", ev.Seq, ev.Data)
			close(done)
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, _ = sess.Publish(ctx, []byte("4"))
	<-done
	// Output:
	// snapshot at 3: {"sum":6}
	// event 4: 4
}
