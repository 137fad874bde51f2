package fanout

import (
	"net"
	"syscall"
)

// directWriter is the state for writing to a socket without the runtime's
// poller, set up once per connection so a write allocates nothing. It is
// nil for sockets that are not plain file descriptors (TLS, in-memory
// pipes); their writers do all the writing.
type directWriter struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool // writes buf once, never waits
	buf []byte
	n   int
	err error
}

func newDirectWriter(nc net.Conn) *directWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	d := &directWriter{raw: raw}
	d.fn = func(fd uintptr) bool {
		d.n, d.err = syscall.Write(int(fd), d.buf)
		return true // one attempt; a full socket is the writer's business
	}
	return d
}

// write makes one non-blocking attempt to write b and returns how much of
// it the socket took. A full socket is not an error.
func (d *directWriter) write(b []byte) (int, error) {
	d.buf = b
	err := d.raw.Write(d.fn)
	d.buf = nil
	if err != nil {
		return 0, err
	}
	if d.n < 0 {
		d.n = 0
	}
	if d.err == syscall.EAGAIN || d.err == syscall.EINTR {
		return d.n, nil
	}
	return d.n, d.err
}
