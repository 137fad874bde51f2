package main

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// connSet tracks open TCP connections, so that faults can be injected into
// them: an abrupt close is what a crashed peer or a broken network looks
// like.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newConnSet() *connSet { return &connSet{conns: make(map[net.Conn]struct{})} }

func (s *connSet) add(c net.Conn) net.Conn {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return &trackedConn{Conn: c, set: s}
}

// killRandom closes one connection picked at random and reports whether
// there was one.
func (s *connSet) killRandom(rnd *rand.Rand) bool {
	s.mu.Lock()
	n := len(s.conns)
	if n == 0 {
		s.mu.Unlock()
		return false
	}
	k := rnd.IntN(n)
	var victim net.Conn
	for c := range s.conns {
		if k == 0 {
			victim = c
			break
		}
		k--
	}
	delete(s.conns, victim)
	s.mu.Unlock()
	_ = victim.Close()
	return true
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.conns, c.Conn)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

// NetConn lets http.ResponseController reach the TCP connection.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// trackingListener tracks the connections it accepts and gives each a
// small send buffer, so that a client that stops reading blocks the
// server's writes within a few KiB, as a slow mobile link would.
type trackingListener struct {
	net.Listener
	set     *connSet
	sendBuf int
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && l.sendBuf > 0 {
		_ = tc.SetWriteBuffer(l.sendBuf)
	}
	return l.set.add(c), nil
}

// trackingClient is an HTTP client whose connections are tracked and have
// a small receive buffer.
func trackingClient(set *connSet, recvBuf int) (*http.Client, *http.Transport) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok && recvBuf > 0 {
				_ = tc.SetReadBuffer(recvBuf)
			}
			if set == nil {
				return c, nil
			}
			return set.add(c), nil
		},
		MaxIdleConnsPerHost: -1,
	}
	return &http.Client{Transport: tr}, tr
}
