package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"unicode/utf8"
)

// MaxIDLen is the longest publish id a client may choose, in bytes.
const MaxIDLen = 64

// ErrProtocol is wrapped by every decoding error: the peer broke the protocol.
var ErrProtocol = errors.New("protocol error")

// ClientMessage is one decoded client-to-server message.
type ClientMessage struct {
	Type string
	ID   string          // publish
	Data json.RawMessage // publish; compact, never contains a raw newline
	Seq  uint64          // ack
}

type rawClientMessage struct {
	Type *string         `json:"type"`
	ID   *string         `json:"id"`
	Data json.RawMessage `json:"data"`
	Seq  *uint64         `json:"seq"`
}

// DecodeClient decodes and validates one client message (one NDJSON line).
func DecodeClient(line []byte) (ClientMessage, error) {
	var raw rawClientMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return ClientMessage{}, fmt.Errorf("%w: malformed message: %v", ErrProtocol, err)
	}
	if raw.Type == nil {
		return ClientMessage{}, fmt.Errorf("%w: missing type", ErrProtocol)
	}
	m := ClientMessage{Type: *raw.Type}
	switch m.Type {
	case TypePublish:
		if raw.ID == nil {
			return m, fmt.Errorf("%w: publish without id", ErrProtocol)
		}
		if n := len(*raw.ID); n == 0 || n > MaxIDLen {
			return m, fmt.Errorf("%w: publish id must be 1-%d bytes, got %d", ErrProtocol, MaxIDLen, n)
		}
		if raw.Data == nil {
			return m, fmt.Errorf("%w: publish without data", ErrProtocol)
		}
		if !utf8.Valid(raw.Data) {
			return m, fmt.Errorf("%w: publish data is not valid UTF-8", ErrProtocol)
		}
		m.ID = *raw.ID
		m.Data = Compact(raw.Data)
	case TypeAck:
		if raw.Seq == nil {
			return m, fmt.Errorf("%w: ack without seq", ErrProtocol)
		}
		m.Seq = *raw.Seq
	case TypePong:
	default:
		return m, fmt.Errorf("%w: unknown type %q", ErrProtocol, m.Type)
	}
	return m, nil
}

// Compact returns data without insignificant whitespace when it contains a
// raw newline, which would otherwise split an NDJSON line. data must be valid
// JSON.
func Compact(data []byte) []byte {
	if bytes.IndexByte(data, '\n') < 0 {
		return data
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return data
	}
	return b.Bytes()
}

// Lines yields the non-empty NDJSON lines of a frame, without their '\n'.
func Lines(frame []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(frame) > 0 {
			var line []byte
			if i := bytes.IndexByte(frame, '\n'); i >= 0 {
				line, frame = frame[:i], frame[i+1:]
			} else {
				line, frame = frame, nil
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if !yield(line) {
				return
			}
		}
	}
}
