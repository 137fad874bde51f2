// Command collab is a shared live list in the browser: every tab that opens
// a document sees the same notes in the same order, adds its own, and keeps
// going across disconnects and server restarts.
//
//	go run -C examples/collab .             # then open http://127.0.0.1:8080/
//	go run -C examples/collab . -addr :9000
//	go run -C examples/collab . -addr :80 -hosts collab.example.com
//	go run -C examples/collab . -drain 15s  # stay up 15 s answering /readyz 503 before closing clients
//	go run -C examples/collab . -redis 127.0.0.1:6379 -addr 127.0.0.1:8081
//	go run -C examples/collab . -nats nats://127.0.0.1:4222 -addr 127.0.0.1:8082
//
// The example is a Go module of its own, so that its metrics (the metrics
// module, on the Prometheus client) and its shared logs (the redislog and
// natslog modules) never become the library's dependencies.
//
// Each document is a session of one fanout.Hub: the page of document NAME
// is at /d/NAME/ and its WebSocket at /d/NAME/ws; / and /ws are the default
// document, "collab". Documents are created when first opened and evicted
// a minute after their last tab left. The server follows each document's
// session (Session.Follow) into its latest notes and hands them to a new
// or reset page as the session's snapshot (fanout.WithSnapshot), so a page
// shows the notes at once, however far back they go.
//
// By default each document's log is in memory: a restart, or the eviction
// of an idle document, starts it again empty. With -redis ADDR (package
// redislog) or -nats URL (package natslog, JetStream stream COLLAB) the logs
// are kept there, and every server started with the same flag serves the
// same documents: a page can move from one to another and resume.
//
// Next to the documents is what operators need: Prometheus metrics at
// /metrics, liveness at /healthz and readiness at /readyz. The page
// (static/app.js) is built on the browser client package in js/, whose
// committed build is static/fanout-client.js: it resumes from its last seq,
// drops duplicates, acks, answers heartbeats, detects a dead server, takes
// snapshots and retries its publishes with the same ids.
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
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/health"
	"github.com/fanout-go/fanout/metrics"
)

// static holds the page: plain HTML, CSS and JavaScript, and the browser
// client's build, committed, so running the example needs no npm.
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
	hosts := flag.String("hosts", "", "comma-separated extra Host names to answer to, such as the domain the server is reached by (default: only the listen address)")
	drain := flag.Duration("drain", 0, "on SIGTERM, answer /readyz with 503 for this long before closing clients, so a load balancer stops sending new ones first")
	redisAddr := flag.String("redis", "", "Redis `ADDR` to keep the documents' logs on, shared by every server started with it (default: in memory)")
	natsURL := flag.String("nats", "", "NATS `URL` whose JetStream keeps the documents' logs, shared by every server started with it (default: in memory)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the process at once
	}()

	cfg := config{drain: *drain}
	if *hosts != "" {
		cfg.hosts = strings.Split(*hosts, ",")
	}
	switch {
	case *redisAddr != "" && *natsURL != "":
		logger.Error("collab: -redis and -nats exclude each other")
		os.Exit(2)
	case *redisAddr != "":
		store, closeStore, err := openRedisStore(*redisAddr, "collab")
		if err != nil {
			logger.Error("collab: redis", "addr", *redisAddr, "err", err)
			os.Exit(1)
		}
		defer closeStore()
		cfg.logs = store
	case *natsURL != "":
		store, closeStore, err := openNATSStore(ctx, *natsURL, "COLLAB")
		if err != nil {
			logger.Error("collab: nats", "url", *natsURL, "err", err)
			os.Exit(1)
		}
		defer closeStore()
		cfg.logs = store
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Error("collab: listen", "err", err)
		os.Exit(1)
	}
	fmt.Printf("collab: open %s in two or more tabs (add ?user=NAME to pick a name, or /d/NAME/ for another document); Ctrl-C stops\n", pageURL(ln.Addr()))
	if err := run(ctx, ln, logger, cfg); err != nil {
		logger.Error("collab: stopped", "err", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	// drain is how long readiness answers 503 before shutdown.
	drain time.Duration
	// hosts are Host names the WebSocket answers to besides the listen
	// address (run adds that one).
	hosts []string
	// logs keeps each document's log (a redislog or natslog store); nil:
	// in memory.
	logs logStore
}

// logStore is a shared log with one fanout.Log per document:
// *redislog.Store and *natslog.Store are.
type logStore interface {
	Log(name string) fanout.Log
}

// run serves the example on ln until ctx ends, then shuts down gracefully:
// connected pages are closed with 1001 and reconnect on their own. The
// WebSocket answers only requests for ln's own address, or for one of
// cfg.hosts.
func run(ctx context.Context, ln net.Listener, logger *slog.Logger, cfg config) error {
	cfg.hosts = listenHosts(ln.Addr(), cfg.hosts)
	a, err := newApp(logger, cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	return a.serve(ctx, ln)
}

// defaultDoc is the document at / and /ws.
const defaultDoc = "collab"

// app is the example server: the hub of documents and the page, with
// metrics and health checks.
type app struct {
	hub    *fanout.Hub
	logger *slog.Logger
	srv    *http.Server
	health *health.Checker
	drain  time.Duration // how long readiness answers 503 before shutdown
	logs   logStore      // nil: logs in memory
	// stopping is set when the hub's shutdown begins.
	stopping atomic.Bool
	// sessionDone receives the result of Hub.Shutdown, which http.Server
	// runs in its own goroutine (RegisterOnShutdown).
	sessionDone chan error

	// docs holds the notes of each document's current session, which a
	// goroutine of followers keeps up to date.
	mu        sync.Mutex
	docs      map[string]*notes
	followers sync.WaitGroup
}

// session returns the default document's session, opening it if it is
// not live.
func (a *app) session() *fanout.Session {
	if s, ok := a.hub.Session(defaultDoc); ok {
		return s
	}
	s, err := a.hub.Open(defaultDoc)
	if err != nil {
		panic(err) // the hub was shut down before the document was ever opened
	}
	return s
}

// notesOf returns the notes of document name's current session.
func (a *app) notesOf(name string) *notes {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.docs[name]
}

// newApp builds the example's hub and HTTP server. extra options are
// applied to every document after the example's own (tests use them to
// shorten timings).
func newApp(logger *slog.Logger, cfg config, extra ...fanout.Option) (*app, error) {
	page, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	a := &app{logger: logger, drain: cfg.drain, logs: cfg.logs, sessionDone: make(chan error, 1), docs: map[string]*notes{}}
	// Metrics: the sessions' (package metrics) next to the Go runtime's
	// and the process's, on a registry of the example's own.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg)
	if err != nil {
		return nil, err
	}
	obs := docObserver{Metrics: m, created: a.follow}
	sessionOpts := func(name string) []fanout.Option {
		// Each session of a document gets notes of its own, served as its
		// snapshot; a.follow starts following it once the hub made it.
		n := &notes{}
		a.mu.Lock()
		a.docs[name] = n
		a.mu.Unlock()
		opts := []fanout.Option{
			fanout.WithObserver(obs),
			fanout.WithSnapshot(n.snapshot), // a new or reset page gets the notes so far
			fanout.WithValidate(validateNote),
			fanout.WithLogger(logger.With("doc", name)),
			fanout.WithOnJoin(func(c *fanout.Conn) {
				logger.Info("collab: join", "doc", name, "user", c.Identity().User, "conn", c.ID(), "remote", c.RemoteAddr())
			}),
			fanout.WithOnLeave(func(c *fanout.Conn) {
				logger.Info("collab: leave", "doc", name, "user", c.Identity().User, "conn", c.ID(), "reason", c.CloseReason())
			}),
		}
		if a.logs != nil {
			opts = append(opts, fanout.WithLog(a.logs.Log(name)))
		}
		return append(opts, extra...)
	}
	hubOpts := []fanout.HubOption{
		fanout.WithHubAuthenticate(exampleAuth),
		fanout.WithSessionName(func(r *http.Request) string {
			if doc := r.PathValue("doc"); doc != "" {
				return doc
			}
			return defaultDoc // /ws
		}),
		fanout.WithSessionOptions(sessionOpts),
	}
	if cfg.hosts != nil {
		hubOpts = append(hubOpts, fanout.WithHubHosts(cfg.hosts...))
	}
	hub, err := fanout.NewHub(hubOpts...)
	if err != nil {
		return nil, err
	}
	a.hub = hub
	a.health = health.New(hubHealth{a})

	files := pageHeaders(http.FileServerFS(page))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", a.health.Live())
	mux.Handle("GET /readyz", a.health.Ready())
	mux.Handle("GET /", files)
	mux.Handle("GET /ws", hub) // the default document's WebSocket; see PROTOCOL.md
	mux.Handle("GET /d/{doc}/ws", hub)
	mux.HandleFunc("GET /d/{doc}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path+"/?"+r.URL.RawQuery, http.StatusFound)
	})
	// The same page for every document, at /d/NAME/, so that its relative
	// "ws" is that document's WebSocket.
	mux.HandleFunc("GET /d/{doc}/{file...}", func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + r.PathValue("file")
		files.ServeHTTP(w, r2)
	})

	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second, // stops slowloris handshakes
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// A request that is not a WebSocket must be read within
		// ReadTimeout, and a keep-alive connection with no request is
		// closed after IdleTimeout, so idle clients cannot hold every
		// descriptor. WebSockets are not cut: net/http clears these
		// deadlines when the hub takes the connection over.
		ReadTimeout: 30 * time.Second,
		IdleTimeout: 60 * time.Second,
	}
	// http.Server.Shutdown does not close WebSockets (they are hijacked):
	// the hub does, with 1001, so pages resume after a restart.
	a.srv.RegisterOnShutdown(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		a.stopping.Store(true)
		a.sessionDone <- hub.Shutdown(ctx)
	})
	return a, nil
}

// follow starts following the session the hub just created for document
// name into that session's notes, until the session is closed (evicted,
// or shut down with the hub).
func (a *app) follow(name string) {
	a.followers.Add(1)
	go func() { // not under the hub's lock, which it holds while telling the observer
		defer a.followers.Done()
		s, ok := a.hub.Session(name)
		if !ok {
			return // evicted already
		}
		if n := a.notesOf(name); n != nil && n.start() {
			n.follow(s, a.logger)
		}
	}()
}

// docObserver is the sessions' observer: the metrics, and the start of
// each new session's notes.
type docObserver struct {
	*metrics.Metrics
	created func(name string)
}

// HubSessionCreated implements fanout.Observer.
func (o docObserver) HubSessionCreated(name string) {
	o.Metrics.HubSessionCreated(name)
	o.created(name)
}

// hubHealth is what readiness reports on: the hub's documents and
// connections, and, on a shared log, the default document's view of it.
type hubHealth struct{ a *app }

// Health implements health.Source.
func (h hubHealth) Health(ctx context.Context) fanout.Health {
	st := h.a.hub.Stats()
	stopping := h.a.stopping.Load()
	r := fanout.Health{Ready: !stopping, ShuttingDown: stopping, Sessions: st.Sessions, Connections: st.Connections}
	if h.a.logs != nil && !stopping {
		if s, ok := h.a.hub.Session(defaultDoc); ok {
			d := s.Health(ctx)
			r.Ready = r.Ready && d.Ready
			r.Log = d.Log
		}
	}
	return r
}

// serve serves on ln until ctx ends or the listener fails, then shuts the
// HTTP server and the hub down. It returns once every connection's
// goroutines, and every document's follower, have ended.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	defer a.followers.Wait()
	a.logger.Info("collab: serving", "url", pageURL(ln.Addr()))
	served := make(chan error, 1)
	go func() { served <- a.srv.Serve(ln) }()

	select {
	case err := <-served:
		// The listener failed: nothing will shut the hub down gracefully.
		_ = a.hub.Close()
		return err
	case <-ctx.Done():
	}
	a.logger.Info("collab: shutting down")
	// Readiness answers 503 from now on; with -drain, the load balancer has
	// that long to see it and send new clients elsewhere before these are
	// closed with 1001.
	a.health.Drain()
	if a.drain > 0 {
		a.logger.Info("collab: draining", "for", a.drain)
		time.Sleep(a.drain)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := a.srv.Shutdown(sctx)
	<-served                                // http.ErrServerClosed
	err = errors.Join(err, <-a.sessionDone) // wait for the hook's Hub.Shutdown
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

// listenHosts is the Host values the example answers to: the address it
// listens on (a listener on every interface, or on loopback, is reached as
// localhost too), and extra, as given. Other hosts get 403, which stops DNS
// rebinding: a page whose domain is re-pointed to this address still names
// its own domain in the Host header.
func listenHosts(addr net.Addr, extra []string) []string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return append([]string{addr.String()}, extra...)
	}
	var hosts []string
	switch ip := net.ParseIP(host); {
	case ip != nil && ip.IsUnspecified():
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			hosts = append(hosts, net.JoinHostPort(h, port))
		}
	case ip != nil && ip.IsLoopback():
		hosts = append(hosts, net.JoinHostPort(host, port), net.JoinHostPort("localhost", port))
	default:
		hosts = append(hosts, net.JoinHostPort(host, port))
	}
	for _, h := range extra {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
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
