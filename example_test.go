package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/fanout-go/fanout"
)

// A Session is an http.Handler: mount it, publish to it.
func Example() {
	s, err := fanout.NewSession("room-1")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	mux := http.NewServeMux()
	mux.Handle("/ws", s) // clients connect here; see PROTOCOL.md

	seq, err := s.Publish(context.Background(), []byte(`{"text":"hello"}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published seq", seq)
	// Output: published seq 1
}

// Publish returns the event's seq once it is committed; each call gets the
// next one.
func ExampleSession_Publish() {
	s, _ := fanout.NewSession("doc")
	defer s.Close()
	ctx := context.Background()
	for _, data := range []string{`"a"`, `"b"`, `{"c":3}`} {
		seq, _ := s.Publish(ctx, []byte(data))
		fmt.Println(seq, data)
	}
	_, err := s.Publish(ctx, []byte(`not json`))
	fmt.Println(err)
	st := s.Stats()
	fmt.Println("head", st.Head, "oldest", st.Oldest)
	// Output:
	// 1 "a"
	// 2 "b"
	// 3 {"c":3}
	// fanout: data is not valid JSON
	// head 3 oldest 1
}

// Shut the session down after http.Server, which does not close
// WebSockets itself: clients get 1001 and resume, on this node after a
// restart or on another. examples/mount is a whole program that does this.
func ExampleSession_Shutdown() {
	s, _ := fanout.NewSession("room")
	srv := &http.Server{
		Addr:              "127.0.0.1:0",
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second, // stops slowloris handshakes
	}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	// ... on SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx) // stops accepting; WebSockets stay open
	_ = s.Shutdown(ctx)   // sends what is pending, closes each with 1001, waits
	_, err := s.Publish(ctx, []byte(`1`))
	fmt.Println(err)
	// Output: fanout: session closed
}

// Authenticate requests and validate client publishes with hooks.
func ExampleWithAuthenticate() {
	s, err := fanout.NewSession("room",
		fanout.WithAuthenticate(func(r *http.Request) (fanout.Identity, error) {
			user, _, ok := r.BasicAuth() // use your real session or token check
			if !ok {
				return fanout.Identity{}, errors.New("no credentials")
			}
			return fanout.Identity{User: user}, nil
		}),
		fanout.WithHistory(50_000),
		fanout.WithHeartbeat(15*time.Second, 5*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println(s.Name())
	// Output: room
}

// The authentication hook chooses the refusal's status: 401 for an unknown
// caller, 403 (ErrForbidden) for a known user without access to this
// document, any other 4xx through a StatusError.
func ExampleWithAuthenticate_status() {
	members := map[string]bool{"ann": true} // who may open this document
	s, err := fanout.NewSession("doc-42",
		fanout.WithAuthenticate(func(r *http.Request) (fanout.Identity, error) {
			user := r.Header.Get("X-User") // use your real session or token check
			switch {
			case user == "":
				return fanout.Identity{}, errors.New("no credentials") // 401
			case user == "spammer":
				return fanout.Identity{}, &fanout.StatusError{Code: http.StatusTooManyRequests}
			case !members[user]:
				return fanout.Identity{}, fmt.Errorf("%s may not open doc-42: %w", user, fanout.ErrForbidden)
			}
			return fanout.Identity{User: user}, nil
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for _, user := range []string{"", "bob", "spammer"} {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.Header.Set("X-User", user)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		fmt.Printf("%q: %d %s", user, w.Code, w.Body)
	}
	// Output:
	// "": 401 unauthorized
	// "bob": 403 forbidden
	// "spammer": 429 too many requests
}

// A Hub serves one session per document on one route, creating each on
// first use and evicting it once idle.
func ExampleHub() {
	hub, err := fanout.NewHub(
		fanout.WithHubAuthenticate(func(r *http.Request) (fanout.Identity, error) {
			return fanout.Identity{User: r.URL.Query().Get("user")}, nil // your auth here
		}),
		fanout.WithAuthorize(func(_ *http.Request, id fanout.Identity, doc string) error {
			if id.User == "" {
				return fanout.ErrForbidden // 403 before the upgrade
			}
			return nil
		}),
		fanout.WithSessionOptions(func(doc string) []fanout.Option {
			return []fanout.Option{fanout.WithHistory(1000)}
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()

	mux := http.NewServeMux()
	mux.Handle("/docs/{doc}/ws", hub) // /docs/42/ws is session "42"

	ctx := context.Background()
	seq, _ := hub.Publish(ctx, "42", []byte(`{"title":"hello"}`))
	fmt.Println("doc 42 seq", seq)
	seq, _ = hub.Publish(ctx, "7", []byte(`{"title":"other"}`))
	fmt.Println("doc 7 seq", seq)
	st := hub.Stats()
	fmt.Println("sessions", st.Sessions, "published", st.Published)
	// Output:
	// doc 42 seq 1
	// doc 7 seq 1
	// sessions 2 published 2
}
