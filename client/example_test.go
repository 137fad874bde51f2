package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
)

// demo starts a session the way a host application mounts one, and returns
// its WebSocket URL and a function that stops it.
func demo() (*fanout.Session, string, func()) {
	sess, err := fanout.NewSession("demo")
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(sess)
	return sess, "ws" + strings.TrimPrefix(srv.URL, "http"), func() {
		sess.Close()
		srv.Close()
	}
}

// A client with a handler gets every event once, in order, across
// reconnects.
func Example() {
	sess, url, stop := demo()
	defer stop()

	ctx := context.Background()
	done := make(chan struct{})
	c, err := client.Dial(ctx, url, client.WithHandler(func(ev client.Event) {
		fmt.Println(ev.Seq, string(ev.Data))
		if ev.Seq == 3 {
			close(done)
		}
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	for _, data := range []string{`"a"`, `"b"`, `{"c":3}`} {
		if _, err := sess.Publish(ctx, []byte(data)); err != nil {
			fmt.Println(err)
		}
	}
	<-done
	// Output:
	// 1 "a"
	// 2 "b"
	// 3 {"c":3}
}

// Publish returns once the server has sequenced the event; the event also
// comes back to the publisher, with From and ID set.
func ExampleClient_Publish() {
	_, url, stop := demo()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	seq, err := c.Publish(ctx, []byte(`{"text":"hello"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("published as", seq)
	ev := <-c.Events()
	fmt.Println(ev.Seq, string(ev.Data), ev.ID != "")
	// Output:
	// published as 1
	// 1 {"text":"hello"} true
}

// Without a handler, events arrive on a channel that is closed when the
// client stops.
func ExampleClient_Events() {
	sess, url, stop := demo()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() {
		for i := range 3 {
			sess.Publish(ctx, fmt.Appendf(nil, "%d", i*10))
		}
	}()
	for ev := range c.Events() {
		fmt.Println(ev.Seq, string(ev.Data))
		if ev.Seq == 3 {
			c.Close()
		}
	}
	fmt.Println(c.Err())
	// Output:
	// 1 0
	// 2 10
	// 3 20
	// fanout/client: closed
}

// An application that stores the position with its own state picks up
// where it left off, even in a later process, with WithStartAfter.
func ExampleWithStartAfter() {
	sess, url, stop := demo()
	defer stop()

	ctx := context.Background()
	first, err := client.Dial(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	sess.Publish(ctx, []byte(`"seen"`))
	ev := <-first.Events()
	seq, epoch := ev.Seq, ev.Epoch // stored alongside the application's state
	first.Close()

	sess.Publish(ctx, []byte(`"missed"`))

	second, err := client.Dial(ctx, url,
		client.WithStartAfter(seq, epoch),
		client.WithOnReset(func(head uint64, _ string) { fmt.Println("resync to", head) }))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer second.Close()
	ev = <-second.Events()
	fmt.Println(ev.Seq, string(ev.Data))
	// Output:
	// 2 "missed"
}

// When the server ends the connection for good (here the host revokes
// access with 1008), Err says so with the server's own CloseError.
func ExampleClient_Err() {
	sess, url, stop := demo()
	defer stop()

	c, err := client.Dial(context.Background(), url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, conn := range sess.Conns() {
		conn.Close(fanout.ClosePolicy, "access revoked")
	}
	<-c.Done()
	fmt.Println(fanout.CloseCodeOf(c.Err()) == fanout.ClosePolicy)
	fmt.Println(c.Err())
	// Output:
	// true
	// fanout/client: stopped: fanout: connection closed with 1008: access revoked
}
