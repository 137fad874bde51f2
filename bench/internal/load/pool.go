// Package load is the client side of the benchmark: many WebSocket
// connections served by one epoll loop, which reads every frame, finds the
// benchmark payloads inside whatever envelope the server wraps them in, and
// records their latency from the intended send time they carry, their
// per-publisher sequence numbers (to count losses and duplicates) and
// disconnects.
//
// One goroutine reading every socket keeps the client cheap enough not to
// be the bottleneck on one core: no goroutine per connection, no allocation
// per message.
package load

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Kind is the protocol a server under test speaks on top of WebSocket.
type Kind int

const (
	// Plain servers send the payloads as they are, one per frame or
	// several separated by newlines; they need no answer but WebSocket
	// pongs.
	Plain Kind = iota
	// Fanout speaks fanout's protocol: welcome, events, app-level pings.
	Fanout
	// Centrifuge speaks centrifuge's JSON protocol: connect and subscribe
	// commands first, then pushes and app-level pings.
	Centrifuge
)

// Resume asks new connections to resume after a stream position.
type Resume struct {
	Offset uint64 // last seq (fanout) or offset (centrifuge) the client had
	Epoch  string
}

// Markers of the payload fields: {"bt":<intended send time, unix ns>,"bs":<seq>,...}.
var (
	markTime = []byte(`"bt":`)
	markSeq  = []byte(`,"bs":`)
)

type conn struct {
	fd       int
	pending  []byte // start of a frame not yet complete
	frag     []byte // a fragmented message being reassembled
	fragging bool
	next     uint64 // next expected payload seq; 0 takes whatever comes
	closed   bool
}

// Pool is a set of client connections to one server and the epoll loop
// that reads them. All methods are safe for concurrent use.
type Pool struct {
	kind Kind
	addr string
	epfd int

	mu      sync.Mutex
	byFD    []*conn
	open    int
	next    uint64 // expected seq for connections registered from now on
	from    uint64 // payloads before this seq are checked but not measured
	skip    int    // payload bytes that can be skipped after the seq
	hist    Hist
	got     uint64 // payloads received since Reset
	lost    uint64 // payloads skipped over (sequence gaps)
	dups    uint64 // payloads received twice or out of order
	dropped uint64 // connections the server closed since Reset
	reasons map[string]int
	scratch []byte
	out     []byte

	gap  time.Duration
	stop chan struct{}
	done chan struct{}
}

// NewPool starts an empty pool for a server of the given kind at addr
// (host:port). After each sweep over the sockets that were ready, the loop
// waits until gap has passed since the sweep began, so that under load
// each read takes what arrived over gap instead of one frame: one core
// then reads what another writes. Latencies include up to gap of this
// wait; 0 reads as soon as anything arrives.
func NewPool(kind Kind, addr string, gap time.Duration) (*Pool, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &Pool{
		kind:    kind,
		addr:    addr,
		epfd:    epfd,
		reasons: map[string]int{},
		scratch: make([]byte, 256<<10),
		gap:     gap,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go p.loop()
	return p, nil
}

// Close closes every connection and stops the loop.
func (p *Pool) Close() {
	close(p.stop)
	<-p.done
	p.CloseConns()
	_ = syscall.Close(p.epfd)
}

func (p *Pool) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 512)
	sweep := time.Now()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		n, err := syscall.EpollWait(p.epfd, events, 20)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		if n == 0 {
			continue
		}
		if n < len(events) && p.gap > 0 {
			// The ready list is drained after this batch: the sweep ends.
			if d := p.gap - time.Since(sweep); d > 0 {
				time.Sleep(d)
				// Take what arrived meanwhile along with this batch's.
				if m, err := syscall.EpollWait(p.epfd, events, 0); err == nil && m > 0 {
					n = m
				}
			}
			sweep = time.Now()
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if fd := int(ev.Fd); fd < len(p.byFD) {
				if c := p.byFD[fd]; c != nil {
					p.readConn(c)
				}
			}
		}
		p.mu.Unlock()
	}
}

// readConn reads what one socket has, once (the loop is level-triggered).
func (p *Pool) readConn(c *conn) {
	var data []byte
	inPending := len(c.pending) > 0
	if !inPending {
		n, err := rawRead(c.fd, p.scratch)
		if n <= 0 {
			p.readFailed(c, n, err)
			return
		}
		data = p.scratch[:n]
	} else {
		// The rest of a frame: read after its start, in the connection's
		// own buffer, which grows for the rare frame larger than it.
		if cap(c.pending)-len(c.pending) < 32<<10 {
			grown := make([]byte, len(c.pending), 2*cap(c.pending)+64<<10)
			copy(grown, c.pending)
			c.pending = grown
		}
		n, err := rawRead(c.fd, c.pending[len(c.pending):cap(c.pending)])
		if n <= 0 {
			p.readFailed(c, n, err)
			return
		}
		data = c.pending[:len(c.pending)+n]
	}
	rest := p.feed(c, data, time.Now().UnixNano())
	switch {
	case c.closed:
	case len(rest) == 0 && cap(c.pending) > 256<<10:
		c.pending = nil
	case inPending: // rest is a tail of c.pending
		c.pending = c.pending[:copy(c.pending[:cap(c.pending)], rest)]
	default:
		c.pending = append(c.pending[:0], rest...)
	}
}

func (p *Pool) readFailed(c *conn, n int, err error) {
	if n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)) {
		return
	}
	reason := "EOF"
	if err != nil {
		reason = err.Error()
	}
	p.drop(c, reason)
}

// feed parses the frames in data and returns the incomplete tail.
func (p *Pool) feed(c *conn, data []byte, now int64) []byte {
	for len(data) >= 2 {
		b0, b1 := data[0], data[1]
		fin, op := b0&0x80 != 0, b0&0x0f
		n, h := uint64(b1&0x7f), 2
		switch n {
		case 126:
			if len(data) < 4 {
				return data
			}
			n, h = uint64(data[2])<<8|uint64(data[3]), 4
		case 127:
			if len(data) < 10 {
				return data
			}
			n = 0
			for _, b := range data[2:10] {
				n = n<<8 | uint64(b)
			}
			h = 10
		}
		if b1&0x80 != 0 {
			h += 4 // a masked server frame is a protocol error; skip the key
		}
		if uint64(len(data)-h) < n {
			return data
		}
		payload := data[h : h+int(n)]
		data = data[h+int(n):]
		switch op {
		case 0x0, 0x1, 0x2:
			if !fin || c.fragging {
				c.frag = append(c.frag, payload...)
				c.fragging = !fin
				if fin {
					p.message(c, c.frag, now)
					c.frag = c.frag[:0]
				}
				continue
			}
			p.message(c, payload, now)
		case 0x8:
			reason := "close frame"
			if len(payload) >= 2 {
				reason = fmt.Sprintf("close %d %s", int(payload[0])<<8|int(payload[1]), payload[2:])
			}
			p.drop(c, reason)
			return nil
		case 0x9:
			p.send(c, 0xA, payload)
		}
		if c.closed {
			return nil
		}
	}
	return data
}

// message handles one WebSocket message: every payload in it, and the
// protocol's heartbeats.
func (p *Pool) message(c *conn, msg []byte, now int64) {
	switch p.kind {
	case Fanout:
		if bytes.Contains(msg, []byte(`{"type":"ping"}`)) {
			p.send(c, 0x1, []byte(`{"type":"pong"}`))
		}
	case Centrifuge:
		if bytes.HasPrefix(msg, []byte("{}")) || bytes.Contains(msg, []byte("\n{}")) {
			p.send(c, 0x1, []byte("{}"))
		}
	}
	for {
		i := bytes.Index(msg, markTime)
		if i < 0 {
			return
		}
		msg = msg[i+len(markTime):]
		bt, k := parseUint(msg)
		msg = msg[k:]
		if !bytes.HasPrefix(msg, markSeq) {
			continue
		}
		msg = msg[len(markSeq):]
		bs, k := parseUint(msg)
		msg = msg[k:]
		p.note(c, int64(bt), bs, now)
		if p.skip > 0 && len(msg) > p.skip {
			msg = msg[p.skip:]
		}
	}
}

func (p *Pool) note(c *conn, bt int64, bs uint64, now int64) {
	if bs >= p.from {
		p.hist.Record(time.Duration(now - bt))
		p.got++
	}
	switch {
	case c.next == 0 || bs == c.next:
	case bs > c.next:
		p.lost += bs - c.next
	default:
		p.dups++
		return
	}
	c.next = bs + 1
}

func parseUint(b []byte) (v uint64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}

// send writes one masked client frame. Frames are small and the socket's
// buffer nearly empty, so a short write only happens on a dying connection.
func (p *Pool) send(c *conn, op byte, payload []byte) {
	p.out = appendClientFrame(p.out[:0], op, payload)
	if _, err := rawWrite(c.fd, p.out); err != nil && !errors.Is(err, syscall.EAGAIN) {
		p.drop(c, err.Error())
	}
}

// appendClientFrame appends a final client frame. The mask key is zero, so
// the payload goes as is (a valid key; servers unmask with XOR).
func appendClientFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, payload...)
}

// drop closes a connection the server closed or broke.
func (p *Pool) drop(c *conn, reason string) {
	if len(p.reasons) < 32 {
		p.reasons[reason]++
	}
	p.dropped++
	p.closeConn(c)
}

func (p *Pool) closeConn(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	p.byFD[c.fd] = nil
	p.open--
	_ = syscall.Close(c.fd) // also leaves the epoll set
	c.pending, c.frag = nil, nil
}

// register adds a connection whose handshake is done; leftover is what was
// read past the handshake response.
func (p *Pool) register(fd int, leftover []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &conn{fd: fd, next: p.next}
	for fd >= len(p.byFD) {
		p.byFD = append(p.byFD, make([]*conn, len(p.byFD)+1024)...)
	}
	p.byFD[fd] = c
	p.open++
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.closeConn(c)
		return fmt.Errorf("epoll add: %w", err)
	}
	if len(leftover) > 0 {
		if rest := p.feed(c, leftover, time.Now().UnixNano()); len(rest) > 0 && !c.closed {
			c.pending = append([]byte(nil), rest...)
		}
	}
	return nil
}

// CloseConns closes every connection from the client side, with a reset
// (no TIME_WAIT left behind). These do not count as disconnects.
func (p *Pool) CloseConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.byFD {
		if c != nil {
			_ = syscall.SetsockoptLinger(c.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
			p.closeConn(c)
		}
	}
}

// Reset starts a measurement: every open connection, and any connected
// later, expects the payload with seq next first; counters and the
// histogram start from zero. size is the payload size of the coming
// messages (0 if unknown).
func (p *Pool) Reset(next uint64, size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next, p.from = next, next
	for _, c := range p.byFD {
		if c != nil {
			c.next = next
		}
	}
	p.hist = Hist{}
	p.got, p.lost, p.dups, p.dropped = 0, 0, 0, 0
	clear(p.reasons)
	// After its seq, a payload has at least size-41 bytes left; skipping
	// a little less than that saves scanning the padding.
	p.skip = max(0, size-52)
}

// Measure starts the measured part of a step after a warm-up: counters
// and the histogram start from zero and count only payloads from seq from
// on, while every connection keeps checking its sequence across both.
func (p *Pool) Measure(from uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.from = from
	p.hist = Hist{}
	p.got, p.lost, p.dups, p.dropped = 0, 0, 0, 0
	clear(p.reasons)
}

// Progress is what the connections saw since the last Reset.
type Progress struct {
	Open     int    // connections open now
	Complete int    // open connections that received every payload up to the given seq
	Got      uint64 // payloads received
	Lost     uint64 // payloads missing from a connection's sequence
	Dups     uint64 // payloads received twice or out of order
	Dropped  uint64 // connections closed by the server or broken
	Reasons  map[string]int
}

// Progress reports the counters since Reset; Complete counts connections
// that have received every payload up to and including seq last.
func (p *Pool) Progress(last uint64) Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := Progress{Open: p.open, Got: p.got, Lost: p.lost, Dups: p.dups, Dropped: p.dropped, Reasons: map[string]int{}}
	for _, c := range p.byFD {
		if c != nil && c.next > last {
			pr.Complete++
		}
	}
	for k, v := range p.reasons {
		pr.Reasons[k] = v
	}
	return pr
}

// Latency returns a copy of the latency histogram since Reset.
func (p *Pool) Latency() *Hist {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hist
	return &h
}

// Open returns the number of open connections.
func (p *Pool) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}
