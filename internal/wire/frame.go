package wire

import "encoding/binary"

// FrameHeadroom is the room a frame's payload leaves in front of it for
// TextFrame to write the header into.
const FrameHeadroom = 10

// TextFrame turns buf, whose first FrameHeadroom bytes are reserved and
// whose rest is the payload, into one unmasked, final WebSocket text frame
// (RFC 6455 section 5.2), as a server sends it. It returns the frame, a
// subslice of buf, so that the whole frame goes out in one write.
func TextFrame(buf []byte) []byte {
	n := len(buf) - FrameHeadroom
	var start int
	switch {
	case n < 126:
		start = FrameHeadroom - 2
		buf[start+1] = byte(n)
	case n <= 0xFFFF:
		start = FrameHeadroom - 4
		buf[start+1] = 126
		binary.BigEndian.PutUint16(buf[start+2:], uint16(n))
	default:
		start = 0
		buf[1] = 127
		binary.BigEndian.PutUint64(buf[2:], uint64(n))
	}
	buf[start] = 0x81 // FIN, text
	return buf[start:]
}

// PongFrame returns an unmasked pong frame carrying payload, which, like
// the ping's it answers, is at most 125 bytes.
func PongFrame(payload []byte) []byte {
	return append([]byte{0x8A, byte(len(payload))}, payload...)
}
