package fanout

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// A write that meets a deadline the sweep set for an earlier write lifts it
// and goes on; a write that has really run past the write timeout fails.
func TestWriteAfterStaleDeadline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		wantErr error
	}{
		{"deadline meant for an earlier write", time.Hour, nil},
		{"write past the timeout", time.Nanosecond, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSession("t", WithWriteTimeout(tc.timeout))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			server, client := net.Pipe()
			defer server.Close()
			defer client.Close()
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(client)
				got <- b
			}()
			c := &Conn{s: s, netConn: server}
			_ = server.SetWriteDeadline(time.Unix(1, 0)) // as the sweep does
			frame := []byte("frame")
			err = c.write(frame)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("write: %v, want %v", err, tc.wantErr)
			}
			_ = server.Close()
			b := <-got
			if tc.wantErr == nil && !bytes.Equal(b, frame) {
				t.Fatalf("client read %q, want %q", b, frame)
			}
			if c.writeStart.Load() != 0 {
				t.Fatal("writeStart left set")
			}
		})
	}
}
