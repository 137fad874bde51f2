package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// message is any message from the server. Fields the client does not use
// (presence, identities, the session name) are left undecoded.
type message struct {
	Type      string          `json:"type"`
	Seq       uint64          `json:"seq"`
	Data      json.RawMessage `json:"data"`
	From      string          `json:"from"`
	ID        string          `json:"id"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Epoch     string          `json:"epoch"`
	Head      uint64          `json:"head"`
	Heartbeat int64           `json:"heartbeat"` // ms
	Resumed   bool            `json:"resumed"`
	Snapshot  bool            `json:"snapshot"` // welcome: a snapshot message follows
	After     *uint64         `json:"after"`    // welcome: resumed from the identity's position, after this seq
}

// decodeFrame splits a frame into its messages (one JSON object per line,
// empty lines ignored) and checks the fields the client relies on. Types it
// does not know are returned as they are, for the caller to skip.
func decodeFrame(frame []byte) ([]message, error) {
	msgs := make([]message, 0, bytes.Count(frame, []byte{'\n'})+1)
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m message
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("fanout/client: malformed message: %w", err)
		}
		if err := m.check(); err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func (m *message) check() error {
	var bad string
	switch m.Type {
	case "":
		bad = "type"
	case "welcome":
		if m.Epoch == "" {
			bad = "epoch"
		}
	case "event":
		if m.Seq == 0 {
			bad = "seq"
		} else if len(m.Data) == 0 {
			bad = "data"
		}
	case "snapshot":
		if m.Epoch == "" {
			bad = "epoch"
		} else if len(m.Data) == 0 {
			bad = "data"
		}
	case "ack":
		if m.ID == "" || m.Seq == 0 {
			bad = "id or seq"
		}
	case "error":
		if m.Code == "" {
			bad = "code"
		}
	}
	if bad != "" {
		return fmt.Errorf("fanout/client: %q message without a valid %s", m.Type, bad)
	}
	return nil
}

// appendAck appends a cumulative ack of everything up to seq.
func appendAck(dst []byte, seq uint64) []byte {
	dst = append(dst, `{"type":"ack","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}')
}

var pongMessage = []byte(`{"type":"pong"}`)

// encodePublish builds a publish message. The data is compacted, which both
// validates it and removes any raw newline that would split the message in
// two on the wire. The id is hex, so it needs no escaping.
func encodePublish(id string, data []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(data) + len(id) + 40)
	b.WriteString(`{"type":"publish","id":"`)
	b.WriteString(id)
	b.WriteString(`","data":`)
	if err := json.Compact(&b, data); err != nil {
		return nil, fmt.Errorf("fanout/client: publish data is not valid JSON: %w", err)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
