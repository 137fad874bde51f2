package wire

import (
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
// copy: it does not alias b.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("wire: event: %w", err)
	}
	return e, nil
}
