package fanout_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// WebSocket opcodes, for frames built by hand.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// frameSpec is one WebSocket frame as a client would send it, including the
// ways a hostile client could get it wrong.
type frameSpec struct {
	op       byte
	payload  []byte
	notFin   bool   // clear FIN: more fragments follow
	rsv      byte   // RSV1-3 bits, 0x70 for all three
	unmasked bool   // client frames must be masked
	length   uint64 // the length the header claims; 0: len(payload)
	claim    bool   // use length even when it is 0
}

// encode returns the frame's bytes.
func (f frameSpec) encode() []byte {
	n := uint64(len(f.payload))
	if f.length != 0 || f.claim {
		n = f.length
	}
	b0 := f.op&0x0F | f.rsv&0x70
	if !f.notFin {
		b0 |= 0x80
	}
	out := []byte{b0}
	var mask byte
	if !f.unmasked {
		mask = 0x80
	}
	switch {
	case n < 126:
		out = append(out, mask|byte(n))
	case n <= 0xFFFF:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, n)
	}
	p := append([]byte(nil), f.payload...)
	if !f.unmasked {
		key := [4]byte{0x5a, 0x17, 0xc3, 0x9e}
		out = append(out, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return append(out, p...)
}

func textFrame(s string) []byte   { return frameSpec{op: opText, payload: []byte(s)}.encode() }
func binaryFrame(s string) []byte { return frameSpec{op: opBinary, payload: []byte(s)}.encode() }

// closeFrame is a client close frame with code and reason.
func closeFrame(code uint16, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, code)
	return frameSpec{op: opClose, payload: append(p, reason...)}.encode()
}

// rawConn is a WebSocket client written by hand over TCP, so that tests can
// send what no well-behaved client would: broken or truncated frames,
// unmasked frames, bytes dribbled one at a time, abrupt hang-ups.
type rawConn struct {
	nc      net.Conn
	br      *bufio.Reader
	welcome msg
	rest    []msg // what followed the welcome in its frame
	silent  bool  // do not answer pings
}

// rawResult is what a handshake got: the connection on 101, otherwise the
// HTTP status and the start of the body.
type rawResult struct {
	conn   *rawConn
	status int
	body   string
}

// rawDial performs a WebSocket handshake by hand against addr, with hdr
// added to (or replacing) the usual headers. On 101 it reads the welcome.
func rawDial(t testing.TB, addr, query string, hdr http.Header) rawResult {
	t.Helper()
	res, err := rawHandshake(addr, query, hdr)
	require.NoError(t, err)
	if res.conn != nil {
		t.Cleanup(func() { _ = res.conn.nc.Close() })
	}
	return res
}

// rawHandshake is rawDial for callers that manage the connection's life
// themselves.
func rawHandshake(addr, query string, hdr http.Header) (rawResult, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResult{}, err
	}
	res, err := handshakeOn(nc, addr, query, hdr)
	if err != nil || res.conn == nil {
		_ = nc.Close()
	}
	return res, err
}

func handshakeOn(nc net.Conn, addr, query string, hdr http.Header) (rawResult, error) {
	if err := nc.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return rawResult{}, err
	}
	target := "/"
	if query != "" {
		target += "?" + query
	}
	host := addr
	if v := hdr.Get("Host"); v != "" { // a Host of the test's choosing
		host = v
		hdr = hdr.Clone()
		hdr.Del("Host")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, host)
	h := http.Header{
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version": {"13"},
	}
	for k, v := range hdr {
		h[http.CanonicalHeaderKey(k)] = v
	}
	if err := h.Write(&b); err != nil {
		return rawResult{}, err
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(nc, b.String()); err != nil {
		return rawResult{}, err
	}
	br := bufio.NewReader(nc)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+target, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return rawResult{}, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		return rawResult{status: resp.StatusCode, body: strings.TrimSpace(string(body))}, nil
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return rawResult{}, err
	}
	c := &rawConn{nc: nc, br: br}
	ev := c.read(5 * time.Second)
	switch {
	case ev.err != nil:
		return rawResult{}, fmt.Errorf("waiting for the welcome: %w", ev.err)
	case len(ev.msgs) == 0 || ev.msgs[0].Type != "welcome":
		return rawResult{}, fmt.Errorf("the first message is not a welcome: %+v", ev)
	}
	c.welcome, c.rest = ev.msgs[0], ev.msgs[1:]
	return rawResult{conn: c, status: resp.StatusCode}, nil
}

// rawEvent is one thing read from the server: the messages of a text frame,
// a close frame, or the end of the TCP stream.
type rawEvent struct {
	msgs      []msg
	closeCode int // a close frame arrived with this code (1005 when empty)
	closeMsg  string
	eof       bool  // the TCP connection ended
	err       error // anything else: timeout, malformed server output
}

// read reads one frame from the server, answering pings, and checks that
// the server's output follows the protocol.
func (c *rawConn) read(timeout time.Duration) rawEvent {
	if len(c.rest) > 0 {
		ev := rawEvent{msgs: c.rest}
		c.rest = nil
		return ev
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	var msgData []byte
	var msgOp byte
	for {
		op, fin, payload, err := c.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
				return rawEvent{eof: true}
			}
			return rawEvent{err: err}
		}
		switch op {
		case opClose:
			if len(payload) == 0 {
				return rawEvent{closeCode: 1005}
			}
			if len(payload) < 2 {
				return rawEvent{err: fmt.Errorf("close payload of %d bytes", len(payload))}
			}
			return rawEvent{closeCode: int(binary.BigEndian.Uint16(payload)), closeMsg: string(payload[2:])}
		case opPing:
			_, _ = c.nc.Write(frameSpec{op: opPong, payload: payload}.encode())
			continue
		case opPong:
			continue
		case opText, opBinary:
			msgOp, msgData = op, payload
		case opContinuation:
			msgData = append(msgData, payload...)
		default:
			return rawEvent{err: fmt.Errorf("server sent opcode %#x", op)}
		}
		if !fin {
			continue
		}
		if msgOp != opText {
			return rawEvent{err: errors.New("server sent a binary message")}
		}
		var ev rawEvent
		for line := range strings.SplitSeq(string(msgData), "\n") {
			if line == "" {
				continue
			}
			var m msg
			if err := json.Unmarshal([]byte(line), &m); err != nil || m.Type == "" {
				return rawEvent{err: fmt.Errorf("server sent a bad line %q: %v", line, err)}
			}
			if m.Type == "ping" && !c.silent {
				_, _ = c.nc.Write(textFrame(`{"type":"pong"}`))
			}
			ev.msgs = append(ev.msgs, m)
		}
		return ev
	}
}

// readFrame reads one server frame, which must be unmasked.
func (c *rawConn) readFrame() (op byte, fin bool, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, false, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, false, nil, errors.New("server sent a masked frame")
	}
	if h[0]&0x70 != 0 {
		return 0, false, nil, errors.New("server set RSV bits")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return 0, false, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return 0, false, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		return 0, false, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, false, nil, err
	}
	return h[0] & 0x0F, h[0]&0x80 != 0, payload, nil
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// write sends bytes as they are.
func (c *rawConn) write(t testing.TB, b []byte) {
	t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	require.NoError(t, err)
}

// closeNormally sends a 1000 close and waits for the server's answer and
// the end of the stream.
func (c *rawConn) closeNormally(t testing.TB) {
	t.Helper()
	_, _ = c.nc.Write(closeFrame(1000, "bye"))
	c.waitEOF(t)
}

// waitEOF reads until the server ends the TCP connection, skipping what it
// sends meanwhile (it must still be well-formed).
func (c *rawConn) waitEOF(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ev := c.read(time.Until(deadline))
		if ev.eof {
			return
		}
		require.NoError(t, ev.err)
	}
	require.FailNow(t, "the server did not end the connection")
}

// skipUntil reads frames until one contains needle, without decoding them:
// for tests where the messages in between do not matter and decoding them
// would cost more than the test.
func (c *rawConn) skipUntil(needle []byte, timeout time.Duration) error {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	for {
		op, _, payload, err := c.readFrame()
		switch {
		case err != nil:
			return err
		case op == opClose:
			return fmt.Errorf("closed by the server: %x", payload)
		case bytes.Contains(payload, needle):
			return nil
		}
	}
}

// closeCodeUntilEOF reads until the server ends the connection and returns
// the code of the close frame it sent, or 0 if it sent none.
func (c *rawConn) closeCodeUntilEOF(timeout time.Duration) (int, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	code := 0
	for {
		op, _, payload, err := c.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
				return code, nil
			}
			return code, err
		}
		if op == opClose && len(payload) >= 2 {
			code = int(binary.BigEndian.Uint16(payload))
			_, _ = c.nc.Write(closeFrame(uint16(code), ""))
		}
	}
}
