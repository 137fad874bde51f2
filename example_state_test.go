package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

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

// WithSnapshot hands a client that starts without a position the host's
// state and the seq it reflects, then exactly the events after it.
func ExampleWithSnapshot() {
	s, _ := fanout.NewSession("doc", fanout.WithSnapshot(func(context.Context) (fanout.Snapshot, error) {
		// The host's state as of seq 2; in a real host, kept up to date
		// with Follow (see ExampleSession_Follow).
		return fanout.Snapshot{Seq: 2, Data: json.RawMessage(`{"sum":5}`)}, nil
	}))
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	for _, data := range []string{`2`, `3`, `5`} {
		_, _ = s.Publish(context.Background(), []byte(data))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.CloseNow()
	for seen := 0; seen < 3; {
		_, frame, err := ws.Read(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, line := range strings.Split(strings.TrimSpace(string(frame)), "\n") {
			var m struct {
				Type     string
				Seq      uint64
				Head     uint64
				Snapshot bool
				Data     json.RawMessage
			}
			_ = json.Unmarshal([]byte(line), &m)
			switch m.Type {
			case "welcome":
				fmt.Println("welcome: head", m.Head, "snapshot", m.Snapshot)
			case "snapshot", "event":
				fmt.Println(m.Type, m.Seq, string(m.Data))
			}
			seen++
		}
	}
	// Output:
	// welcome: head 3 snapshot true
	// snapshot 2 {"sum":5}
	// event 3 5
}
