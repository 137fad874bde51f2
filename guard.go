package fanout

import (
	"errors"
	"io"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// frameGuard is what the WebSocket library reads a client's bytes through
// (see hijackRecorder). It follows the frames as they pass, before the
// library acts on them, and stops the stream at the first frame that breaks
// one of the session's rules:
//
//   - a data frame whose header announces more than the maximum message
//     size, alone or with the frames of its message before it: 1009, as
//     soon as the header is read, not after the bytes arrive (or never do);
//   - a control frame (ping, pong, close) past the connection's inbound
//     budget, which text messages share: 1008;
//   - a close frame whose reason is not valid UTF-8: 1007 (RFC 6455
//     section 8.1), instead of the library echoing it back.
//
// The bytes before the frame that broke the rule are passed on; from then
// on every Read fails, the reader sees the error, and Conn.failGuard sends
// the close frame. The library reads through the guard from one goroutine
// at a time (under its read lock), so the guard needs no lock of its own.
type frameGuard struct {
	src     io.Reader                  // the socket, or net/http's reader when it holds bytes
	limit   int64                      // the maximum message size
	inbound *rate.Limiter              // the connection's inbound budget
	broken  atomic.Pointer[CloseError] // set once a frame broke a rule; read by the reader after the library's read failed

	state     guardState
	op        byte   // the current frame's opcode
	masked    bool   // the current frame is masked
	need      int    // header bytes still to read in this state
	length    uint64 // the current frame's payload length, as announced
	remaining uint64 // payload bytes still to pass
	msgLen    uint64 // the current message's length so far
	mask      [4]byte
	closeBody []byte // a close frame's payload, unmasked; allocated on the first close frame
}

type guardState uint8

const (
	guardFirst   guardState = iota // the first header byte: FIN, opcode
	guardSecond                    // the second: mask bit, 7-bit length
	guardLength                    // 2 or 8 bytes of extended length
	guardMask                      // 4 bytes of masking key
	guardPayload                   // payload bytes
)

// errGuard is what Read returns once a frame broke a rule.
var errGuard = errors.New("fanout: client frame refused")

func newFrameGuard(limit int64, inbound *rate.Limiter) *frameGuard {
	return &frameGuard{limit: limit, inbound: inbound}
}

func (g *frameGuard) Read(p []byte) (int, error) {
	if g.broken.Load() != nil {
		return 0, errGuard
	}
	n, err := g.src.Read(p)
	if at := g.scan(p[:n]); at >= 0 {
		if at == 0 {
			return 0, errGuard
		}
		return at, nil // the rest is never passed on
	}
	return n, err
}

// scan follows b through the frame grammar. It returns the index of the
// byte at which a frame broke a rule, or -1.
func (g *frameGuard) scan(b []byte) int {
	for i := 0; i < len(b); {
		switch g.state {
		case guardFirst:
			g.op = b[i] & 0x0F
			if g.op&0x8 != 0 && g.inbound != nil && !g.inbound.Allow() {
				return g.refuse(i, ClosePolicy, "control frame flood")
			}
			g.state = guardSecond
			i++
		case guardSecond:
			g.masked = b[i]&0x80 != 0
			g.length = uint64(b[i] & 0x7F)
			switch g.length {
			case 126:
				g.state, g.need, g.length = guardLength, 2, 0
			case 127:
				g.state, g.need, g.length = guardLength, 8, 0
			default:
				if at := g.headerDone(i); at >= 0 {
					return at
				}
			}
			i++
		case guardLength:
			g.length = g.length<<8 | uint64(b[i])
			if g.need--; g.need == 0 {
				if at := g.headerDone(i); at >= 0 {
					return at
				}
			}
			i++
		case guardMask:
			g.mask[4-g.need] = b[i]
			if g.need--; g.need == 0 {
				g.startPayload()
			}
			i++
		case guardPayload:
			k := int(min(g.remaining, uint64(len(b)-i)))
			if g.op == opClose && g.length <= maxControlPayload {
				off := len(g.closeBody)
				for j, c := range b[i : i+k] {
					g.closeBody = append(g.closeBody, c^g.mask[(off+j)%4])
				}
			}
			g.remaining -= uint64(k)
			i += k
			if g.remaining == 0 {
				if at := g.frameDone(i - 1); at >= 0 {
					return at
				}
			}
		}
	}
	return -1
}

// The opcodes the guard looks at (RFC 6455 section 5.2).
const (
	opContinuation    = 0x0
	opClose           = 0x8
	maxControlPayload = 125
)

// headerDone runs when the payload length is known, at b's index at.
func (g *frameGuard) headerDone(at int) int {
	if g.op&0x8 == 0 { // a data frame
		if g.op != opContinuation {
			g.msgLen = 0
		}
		if g.length > uint64(g.limit) || g.msgLen+g.length > uint64(g.limit) {
			return g.refuse(at, CloseTooBig, "message too big")
		}
		g.msgLen += g.length
	}
	if g.masked {
		g.state, g.need = guardMask, 4
		return -1
	}
	g.mask = [4]byte{}
	g.startPayload()
	if g.remaining == 0 {
		return g.frameDone(at)
	}
	return -1
}

func (g *frameGuard) startPayload() {
	g.state, g.remaining = guardPayload, g.length
	if g.op == opClose {
		if g.closeBody == nil {
			g.closeBody = make([]byte, 0, maxControlPayload)
		}
		g.closeBody = g.closeBody[:0]
	}
	if g.remaining == 0 {
		g.state = guardFirst
	}
}

// frameDone runs at the last byte of a frame, at b's index at.
func (g *frameGuard) frameDone(at int) int {
	g.state = guardFirst
	if g.op == opClose && len(g.closeBody) > 2 && !utf8.Valid(g.closeBody[2:]) {
		return g.refuse(at, CloseInvalidData, "close reason is not valid UTF-8")
	}
	return -1
}

func (g *frameGuard) refuse(at int, code CloseCode, reason string) int {
	g.broken.Store(&CloseError{Code: code, Reason: reason})
	return at
}
