package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// TypeSnapshot is the server message that hands a client the host's state
// as of a seq, right after its welcome.
const TypeSnapshot = "snapshot"

// AppendSnapshot appends a snapshot message: the host's state data (compact
// JSON) as of seq of epoch.
func AppendSnapshot(dst []byte, epoch string, seq uint64, data []byte) []byte {
	dst = append(dst, `{"type":"snapshot","epoch":`...)
	dst = AppendString(dst, epoch)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// Event is an event message decoded back from the bytes AppendEvent made.
type Event struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
	From string          `json:"from"`
	ID   string          `json:"id"`
}

// DecodeEvent decodes an event message that AppendEvent encoded. Data is a
// copy: it does not alias b. It reads the layout AppendEvent writes
// directly, several times faster than encoding/json, and falls back to
// encoding/json for anything else.
func DecodeEvent(b []byte) (Event, error) {
	if e, ok := decodeEventFast(b); ok {
		return e, nil
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("wire: event: %w", err)
	}
	return e, nil
}

func decodeEventFast(b []byte) (Event, bool) {
	const prefix = `{"type":"event","seq":`
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return Event{}, false
	}
	i := len(prefix)
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	seq, err := strconv.ParseUint(string(b[i:j]), 10, 64)
	if err != nil || !bytes.HasPrefix(b[j:], []byte(`,"data":`)) {
		return Event{}, false
	}
	i = j + len(`,"data":`)
	j = skipValue(b, i)
	if j <= i {
		return Event{}, false
	}
	e := Event{Seq: seq, Data: append(json.RawMessage(nil), b[i:j]...)}
	rest := b[j:]
	if len(rest) > 0 && rest[0] != ',' && rest[0] != '}' {
		return Event{}, false // whitespace: leave it to encoding/json
	}
	if len(rest) == 1 && rest[0] == '}' {
		return e, true
	}
	if !bytes.HasPrefix(rest, []byte(`,"from":`)) {
		return Event{}, false
	}
	rest = rest[len(`,"from":`):]
	k := skipValue(rest, 0)
	if k <= 0 || !bytes.HasPrefix(rest[k:], []byte(`,"id":`)) {
		return Event{}, false
	}
	if json.Unmarshal(rest[:k], &e.From) != nil {
		return Event{}, false
	}
	rest = rest[k+len(`,"id":`):]
	k = skipValue(rest, 0)
	if k <= 0 || string(rest[k:]) != "}" || json.Unmarshal(rest[:k], &e.ID) != nil {
		return Event{}, false
	}
	return e, true
}

// skipValue returns the index just past the compact JSON value that
// starts at b[i], or -1 when there is none. It trusts the value to be
// valid, as everything AppendEvent wrote is.
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return -1
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\r', '\n': // whitespace after a value that was not compacted
			if depth == 0 {
				return i
			}
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}
