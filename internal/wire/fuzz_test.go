package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzLines checks the NDJSON splitter against a plain statement of the
// rule: split on '\n', drop the lines that are only whitespace, keep the
// rest as they are, in order.
func FuzzLines(f *testing.F) {
	for _, s := range []string{"", "\n", "a", "a\nb", "a\r\nb\r\n", "\n\n \t\n", `{"type":"pong"}` + "\n" + `{"type":"ack","seq":1}`, "\x00\n\u2028\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var want []string
		for l := range strings.SplitSeq(string(frame), "\n") {
			if strings.TrimSpace(l) != "" {
				want = append(want, l)
			}
		}
		var got []string
		for l := range Lines(frame) {
			if bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("line %q contains a newline", l)
			}
			got = append(got, string(l))
		}
		if len(got) != len(want) {
			t.Fatalf("Lines(%q) = %q, want %q", frame, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("Lines(%q) = %q, want %q", frame, got, want)
			}
		}
		// A consumer that stops early stops the iteration.
		n := 0
		for range Lines(frame) {
			n++
			break
		}
		if n != min(1, len(want)) {
			t.Fatalf("Lines(%q) went on after the consumer stopped", frame)
		}
	})
}

// FuzzCompact checks that publish data, once compacted, is the same JSON
// value without a raw newline, so it cannot break the NDJSON framing, and
// that data without a newline is passed on untouched.
func FuzzCompact(f *testing.F) {
	for _, s := range []string{`1`, `"a\nb"`, "{\n\"a\": [1,\n2]\n}", "[\r\n]", `{"a":"\u2028"}`, " \n null \n "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return // Compact's callers have validated the JSON
		}
		got := Compact(data)
		if !json.Valid(got) {
			t.Fatalf("Compact(%q) = %q, not valid JSON", data, got)
		}
		if bytes.IndexByte(got, '\n') >= 0 {
			t.Fatalf("Compact(%q) = %q contains a newline", data, got)
		}
		if bytes.IndexByte(data, '\n') < 0 && !bytes.Equal(got, data) {
			t.Fatalf("Compact(%q) = %q changed data without a newline", data, got)
		}
		var a, b bytes.Buffer
		if json.Compact(&a, data) != nil || json.Compact(&b, got) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("Compact(%q) = %q is another value", data, got)
		}
	})
}

// FuzzDecodeClientRoundTrip checks that an accepted publish carries what
// the line said: its id and data decode to the same values as a plain JSON
// decoding of the line's keys, exactly as spelled, and an accepted ack its
// seq; and that an accepted id encodes back to itself, so that the ack and
// the event echo the id the client sent.
func FuzzDecodeClientRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"type":"publish","id":"x","data":{"a":[1,2]}}`, `{"type":"ack","seq":7}`, `{"type":"pong","extra":1}`,
		`{"type":"publish","id":"\u00e9\ud83d\ude00","data":"\n"}`, `{"type":"publish","id":"a","data":1,"id":"b"}`,
		`{"type":"publish","ID":"a","id":"b","data":1}`, `{"type":"publish","id":"c\ud800","data":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := DecodeClient(line)
		if err != nil {
			return
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(line, &fields); err != nil {
			t.Fatalf("DecodeClient accepted %q, which is not an object: %v", line, err)
		}
		var plain struct {
			Type, ID string
			Seq      uint64
		}
		if json.Unmarshal(fields["type"], &plain.Type) != nil || m.Type != plain.Type {
			t.Fatalf("type %q, want %s", m.Type, fields["type"])
		}
		switch m.Type {
		case TypePublish:
			if json.Unmarshal(fields["id"], &plain.ID) != nil || m.ID != plain.ID {
				t.Fatalf("id %q, want %s", m.ID, fields["id"])
			}
			var back string
			if json.Unmarshal(AppendString(nil, m.ID), &back) != nil || back != m.ID {
				t.Fatalf("id %q does not round-trip: %q", m.ID, back)
			}
			var a, b bytes.Buffer
			if json.Compact(&a, m.Data) != nil || json.Compact(&b, fields["data"]) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("data %q, want %q", m.Data, fields["data"])
			}
		case TypeAck:
			if json.Unmarshal(fields["seq"], &plain.Seq) != nil || m.Seq != plain.Seq {
				t.Fatalf("seq %d, want %s", m.Seq, fields["seq"])
			}
		}
	})
}
