package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/fanout-go/fanout/bench/internal/peer"
)

// Ready is the line a server process prints on stdout once it listens.
type Ready struct {
	Addr string `json:"addr"`
}

// RaiseFileLimit lifts the soft limit on open files to the hard one.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

// Listen starts p with cfg on a loopback port and serves it with its
// control endpoint until Close is called on the result.
func Listen(p peer.Peer, cfg peer.Config, profile string) (*Running, error) {
	srv, err := p.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, err
	}
	ctl := New(srv, profile)
	hs := &http.Server{Handler: ctl, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return &Running{Addr: ln.Addr().String(), ctl: ctl, hs: hs, srv: srv}, nil
}

// Running is a server under test being served.
type Running struct {
	Addr string
	ctl  *Control
	hs   *http.Server
	srv  peer.Server
}

// Quit is closed when the control endpoint is told to stop.
func (r *Running) Quit() <-chan struct{} { return r.ctl.Quit() }

// Close stops the server: no new connections, the existing ones closed.
func (r *Running) Close() {
	_ = r.hs.Close() // the listener; hijacked WebSockets stay with the server
	r.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.hs.Shutdown(ctx)
}

// Main is a server process: it serves p until told to quit, until its
// standard input closes (the load process went away) or until maxLife.
func Main(p peer.Peer, cfg peer.Config, profile string, maxLife time.Duration) error {
	if _, err := RaiseFileLimit(); err != nil {
		return fmt.Errorf("file limit: %w", err)
	}
	r, err := Listen(p, cfg, profile)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := json.NewEncoder(os.Stdout).Encode(Ready{Addr: r.Addr}); err != nil {
		return err
	}
	stdinGone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinGone)
	}()
	select {
	case <-r.Quit():
	case <-stdinGone:
	case <-time.After(maxLife):
	}
	return nil
}
