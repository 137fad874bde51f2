package client

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary server frames to the client's decoder: it
// must never panic, and every message it accepts must have passed its
// checks (an event has a seq and JSON data).
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"welcome","epoch":"e","head":3,"heartbeat":25000,"resumed":true}`,
		"{\"type\":\"event\",\"seq\":1,\"data\":{\"a\":1}}\n{\"type\":\"ping\"}\n",
		`{"type":"ack","id":"x","seq":2}`,
		`{"type":"error","code":"rate_limited","message":"slow","id":"x"}`,
		`{"type":"event","seq":0,"data":1}`,
		`{"type":"future","x":[1,2]}`,
		"\n\n",
		`{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		msgs, err := decodeFrame(frame)
		if err != nil {
			return
		}
		if len(msgs) > bytes.Count(frame, []byte{'\n'})+1 {
			t.Fatalf("%d messages from %d lines", len(msgs), bytes.Count(frame, []byte{'\n'})+1)
		}
		for _, m := range msgs {
			if m.Type == "event" && (m.Seq == 0 || !json.Valid(m.Data)) {
				t.Fatalf("accepted bad event %+v from %q", m, frame)
			}
		}
	})
}
