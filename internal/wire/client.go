package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
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

// DecodeClient decodes and validates one client message (one NDJSON line).
//
// It is stricter than encoding/json: the line must be one JSON object whose
// keys match exactly (no case folding) and appear once each, and a publish
// id must be a string that round-trips, valid UTF-8 without lone surrogate
// escapes, so that two different ids never decode to the same one. Unknown
// keys are ignored.
func DecodeClient(line []byte) (ClientMessage, error) {
	if !json.Valid(line) {
		err := json.Unmarshal(line, new(json.RawMessage))
		return ClientMessage{}, fmt.Errorf("%w: malformed message: %v", ErrProtocol, err)
	}
	var typ, id, seq, data []byte
	err := objectFields(line, func(key string, value []byte) {
		switch key {
		case "type":
			typ = value
		case "id":
			id = value
		case "data":
			data = value
		case "seq":
			seq = value
		}
	})
	if err != nil {
		return ClientMessage{}, err
	}
	if typ == nil {
		return ClientMessage{}, fmt.Errorf("%w: missing type", ErrProtocol)
	}
	t, err := decodeString(typ)
	if err != nil {
		return ClientMessage{}, fmt.Errorf("%w: type must be a string: %v", ErrProtocol, err)
	}
	m := ClientMessage{Type: t}
	switch m.Type {
	case TypePublish:
		if id == nil {
			return m, fmt.Errorf("%w: publish without id", ErrProtocol)
		}
		if m.ID, err = decodeString(id); err != nil {
			return m, fmt.Errorf("%w: publish id must be a string: %v", ErrProtocol, err)
		}
		if n := len(m.ID); n == 0 || n > MaxIDLen {
			return m, fmt.Errorf("%w: publish id must be 1-%d bytes, got %d", ErrProtocol, MaxIDLen, n)
		}
		if data == nil {
			return m, fmt.Errorf("%w: publish without data", ErrProtocol)
		}
		if !utf8.Valid(data) {
			return m, fmt.Errorf("%w: publish data is not valid UTF-8", ErrProtocol)
		}
		m.Data = Compact(data)
	case TypeAck:
		if seq == nil {
			return m, fmt.Errorf("%w: ack without seq", ErrProtocol)
		}
		if m.Seq, err = strconv.ParseUint(string(seq), 10, 64); err != nil {
			return m, fmt.Errorf("%w: malformed message: seq must be an unsigned 64-bit integer", ErrProtocol)
		}
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
