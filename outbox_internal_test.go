package fanout

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"
)

// A write deadline left in the past by someone else must not fail the
// writer's next write. crypto/tls keeps a timeout as a permanent error, so
// over TLS such a write could never succeed again: the writer sets its own
// deadline for each write it makes.
func TestWriteIgnoresStaleDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{
		{"plain", false},
		{"TLS", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSession("t", WithWriteTimeout(500*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			server, client := tcpPair(t)
			if tc.tls {
				server, client = tlsPair(t, server, client)
			}
			got := make(chan []byte, 1)
			frame := bytes.Repeat([]byte("frame"), 1000)
			go func() {
				b := make([]byte, len(frame))
				_, _ = io.ReadFull(client, b)
				got <- b
			}()
			c := &Conn{s: s, netConn: server}
			_ = server.SetWriteDeadline(time.Unix(1, 0)) // stale
			if err := c.write(frame); err != nil {
				t.Fatalf("write: %v", err)
			}
			if b := <-got; !bytes.Equal(b, frame) {
				t.Fatalf("client read %d bytes, not the frame", len(b))
			}
		})
	}
}

// A write that really runs past the write timeout fails, over TLS too.
func TestWriteTimesOut(t *testing.T) {
	s, err := NewSession("t", WithWriteTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	server, _ := net.Pipe() // nobody reads
	defer server.Close()
	c := &Conn{s: s, netConn: server}
	if err := c.write([]byte("frame")); err == nil {
		t.Fatal("a write nobody read succeeded")
	}
}

func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() {
		_ = server.Close()
		_ = client.Close()
	})
	return server, client
}

func tlsPair(t *testing.T, server, client net.Conn) (net.Conn, net.Conn) {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS() // only for its certificate
	cert := hs.TLS.Certificates[0]
	hs.Close()
	ts := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}})
	tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- tc.Handshake() }()
	if err := ts.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return ts, tc
}
