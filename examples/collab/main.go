// Command collab is a shared live list in the browser: every tab that opens
// the page sees the same notes in the same order, adds its own, and keeps
// going across disconnects and server restarts.
//
//	go run .                  # in examples/collab; then open http://127.0.0.1:8080/
//	go run . -addr :9000
//	go run . -redis 127.0.0.1:6379 -addr 127.0.0.1:8080
//	go run . -redis 127.0.0.1:6379 -addr 127.0.0.1:8081
//
// With -redis ADDR the session's log is on that Redis (package redislog):
// every server started so serves the same notes, in the same order, and a
// page moved from one to another resumes without a reset. Without it the
// log is in memory, and a restart starts a new epoch.
//
// The server side is one fanout.Session mounted at /ws next to the page. The
// page (static/app.js) is the reference browser client of PROTOCOL.md: it
// resumes from its last seq, drops duplicates, acks, answers heartbeats,
// detects a dead server and retries its publishes with the same ids.
//
// Authentication here is a stand-in: the identity is whatever the ?user=
// query parameter says. See exampleAuth.
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/redislog"
)

// static holds the page: plain HTML, CSS and JavaScript, no build step.
//
//go:embed static
var static embed.FS

const (
	maxNameLen      = 32  // characters in a user name
	maxNoteLen      = 280 // characters in a note
	shutdownTimeout = 10 * time.Second
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	redisAddr := flag.String("redis", "", "Redis `ADDR` to keep the session's log on, shared by every server started with it (default: in memory)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the process at once
	}()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Error("collab: listen", "err", err)
		os.Exit(1)
	}
	var opts []fanout.Option
	if *redisAddr != "" {
		l, closeLog, err := openRedisLog(*redisAddr)
		if err != nil {
			logger.Error("collab: redis", "addr", *redisAddr, "err", err)
			os.Exit(1)
		}
		defer closeLog()
		opts = append(opts, fanout.WithLog(l))
	}
	fmt.Printf("collab: open %s in two or more tabs (add ?user=NAME to pick a name); Ctrl-C stops\n", pageURL(ln.Addr()))
	if err := run(ctx, ln, logger, opts...); err != nil {
		logger.Error("collab: stopped", "err", err)
		os.Exit(1)
	}
}

// run serves the example on ln until ctx ends, then shuts down gracefully:
// connected pages are closed with 1001 and reconnect on their own.
func run(ctx context.Context, ln net.Listener, logger *slog.Logger, opts ...fanout.Option) error {
	a, err := newApp(logger, opts...)
	if err != nil {
		_ = ln.Close()
		return err
	}
	return a.serve(ctx, ln)
}

// app is the example server: one session and the page.
type app struct {
	session *fanout.Session
	logger  *slog.Logger
	srv     *http.Server
	// sessionDone receives the result of Session.Shutdown, which
	// http.Server runs in its own goroutine (RegisterOnShutdown).
	sessionDone chan error
}

// newApp builds the example's session and HTTP server. extra options are
// applied after the example's own (tests use them to shorten timings).
func newApp(logger *slog.Logger, extra ...fanout.Option) (*app, error) {
	page, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	a := &app{logger: logger, sessionDone: make(chan error, 1)}
	opts := append([]fanout.Option{
		fanout.WithAuthenticate(exampleAuth),
		fanout.WithValidate(validateNote),
		fanout.WithLogger(logger),
		fanout.WithOnJoin(func(c *fanout.Conn) {
			logger.Info("collab: join", "user", c.Identity().User, "conn", c.ID(), "remote", c.RemoteAddr())
		}),
		fanout.WithOnLeave(func(c *fanout.Conn) {
			logger.Info("collab: leave", "user", c.Identity().User, "conn", c.ID(), "reason", c.CloseReason())
		}),
	}, extra...)
	s, err := fanout.NewSession("collab", opts...)
	if err != nil {
		return nil, err
	}
	a.session = s

	mux := http.NewServeMux()
	mux.Handle("GET /", pageHeaders(http.FileServerFS(page)))
	mux.Handle("GET /ws", s) // the WebSocket; see PROTOCOL.md

	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second, // stops slowloris handshakes
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// http.Server.Shutdown does not close WebSockets (they are hijacked):
	// the session does, with 1001, so pages resume after a restart.
	a.srv.RegisterOnShutdown(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		a.sessionDone <- s.Shutdown(ctx)
	})
	return a, nil
}

// serve serves on ln until ctx ends or the listener fails, then shuts the
// HTTP server and the session down. It returns once every connection's
// goroutines have ended.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	a.logger.Info("collab: serving", "url", pageURL(ln.Addr()), "epoch", a.session.Epoch())
	served := make(chan error, 1)
	go func() { served <- a.srv.Serve(ln) }()

	select {
	case err := <-served:
		// The listener failed: nothing will shut the session down gracefully.
		_ = a.session.Close()
		return err
	case <-ctx.Done():
	}
	a.logger.Info("collab: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := a.srv.Shutdown(sctx)
	<-served                                // http.ErrServerClosed
	err = errors.Join(err, <-a.sessionDone) // wait for the hook's Session.Shutdown
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	a.logger.Info("collab: stopped")
	return nil
}

// pageURL is the address to open in a browser: a listener on every
// interface (":8080") is reached as localhost.
func pageURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// exampleAuth takes the identity from the ?user= query parameter.
//
// EXAMPLE ONLY: anyone can claim any name, including someone else's. A real
// service authenticates the request itself (a session cookie, a bearer
// token checked against its own store) and derives the identity from that.
// An error answers 401 before the WebSocket upgrade.
func exampleAuth(r *http.Request) (fanout.Identity, error) {
	user := strings.TrimSpace(r.URL.Query().Get("user"))
	if user == "" {
		return fanout.Identity{}, errors.New("missing ?user=")
	}
	if !utf8.ValidString(user) || utf8.RuneCountInString(user) > maxNameLen {
		return fanout.Identity{}, fmt.Errorf("user name longer than %d characters", maxNameLen)
	}
	return fanout.Identity{User: user}, nil
}

// note is the data of every event in this example.
type note struct {
	Text string `json:"text"`
	At   string `json:"at,omitempty"` // server time of the publish, RFC 3339
}

// validateNote checks a client publish and rewrites it: the text is
// trimmed and stamped with the server's time, and anything else the client
// sent is dropped. An error is shown to the publisher as an error message.
func validateNote(_ context.Context, _ *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(data, &in); err != nil || in.Text == nil {
		return nil, errors.New(`a note is {"text": "..."}`)
	}
	text := strings.TrimSpace(*in.Text)
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		return nil, errors.New("a note cannot be empty")
	case n > maxNoteLen:
		return nil, fmt.Errorf("a note is at most %d characters, this one has %d", maxNoteLen, n)
	}
	return json.Marshal(note{Text: text, At: time.Now().UTC().Format(time.RFC3339)})
}

// pageHeaders sets the headers of the static page: no caching (so a
// restarted server serves its current page), and a content security policy
// that allows only the page's own files and its own WebSocket.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy",
			"default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

// openRedisLog returns the session's log on the Redis at addr, under the
// key prefix "collab", and a function that closes it.
func openRedisLog(addr string) (fanout.Log, func(), error) {
	return openRedisLogPrefix(addr, "collab")
}

func openRedisLogPrefix(addr, prefix string) (fanout.Log, func(), error) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return nil, nil, err
	}
	store, err := redislog.New(rc, redislog.Options{Prefix: prefix})
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	return store.Log("collab"), func() { store.Close(); rc.Close() }, nil
}
