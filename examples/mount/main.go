// Command mount is a fanout session mounted into an ordinary net/http
// service, with the shutdown that closes every client with 1001.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fanout-go/fanout"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	if err := serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
}

// serve runs the service on ln until ctx is done, then shuts it down and
// returns once every WebSocket client has been closed with 1001.
func serve(ctx context.Context, ln net.Listener) error {
	s, err := fanout.NewSession("doc-42", fanout.WithAuthenticate(authenticate))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", s) // clients connect here
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seq, err := s.Publish(r.Context(), data) // everyone gets it, in order
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, seq)
	})

	srv := &http.Server{Handler: mux,
		ReadHeaderTimeout: 10 * time.Second, // slow handshakes
		ReadTimeout:       30 * time.Second, // slow requests that are not WebSockets
		IdleTimeout:       60 * time.Second, // idle keep-alive connections
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served: // the listener failed
		s.Close()
		return err
	case <-ctx.Done(): // SIGTERM
	}

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// http.Server.Shutdown stops accepting and waits for plain requests,
	// but does not close WebSockets (they are hijacked connections):
	// Session.Shutdown does, with 1001, after sending what is pending.
	// Wait for both before the process exits.
	err = srv.Shutdown(sctx)
	return errors.Join(err, s.Shutdown(sctx))
}

// authenticate is where your service checks its cookie or token. An error
// answers 401; one that wraps fanout.ErrForbidden answers 403.
func authenticate(r *http.Request) (fanout.Identity, error) {
	user, err := yourAuth(r)
	return fanout.Identity{User: user}, err
}

// yourAuth stands in for a real check; it trusts a header, so it is no
// authentication at all.
func yourAuth(r *http.Request) (string, error) {
	if u := r.Header.Get("X-User"); u != "" {
		return u, nil
	}
	return "", errors.New("not signed in")
}
