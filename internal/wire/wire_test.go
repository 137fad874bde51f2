package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	tests := []string{
		"", "alice", `quo"te`, `back\slash`, "new\nline", "tab\t", "\x00\x1f",
		"<script>&", "ünïcødé ✓", "\u2028\u2029", "bad\xffutf8", strings.Repeat("x", 200),
	}
	for _, s := range tests {
		t.Run(s, func(t *testing.T) {
			want, err := json.Marshal(s)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(AppendString(nil, s)))
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\n", "\xff", "\u2028", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		want, _ := json.Marshal(s)
		if string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestServerMessagesAreValidJSONLines(t *testing.T) {
	msgs := [][]byte{
		AppendEvent(nil, 7, []byte(`{"a":1}`), "", ""),
		AppendEvent(nil, 8, []byte(`"x"`), "al\nice", "id\"1"),
		AppendAck(nil, "p\n1", 9),
		AppendError(nil, CodeRateLimited, "slow\ndown", "p1"),
		AppendError(nil, CodeInvalid, "no id", ""),
		AppendPresence(nil, TypeJoin, "bob", "c1"),
		AppendWelcome(nil, &Welcome{Session: "s", Epoch: "e", Head: 3, Conn: "c", User: "u", HeartbeatMS: 25000,
			Resumed: true, Presence: []Member{{User: "u", Conn: "c"}, {User: "v", Conn: "d"}}}),
		Ping,
	}
	for _, m := range msgs {
		assert.NotContains(t, string(m), "\n")
		var v map[string]any
		require.NoError(t, json.Unmarshal(m, &v), "%s", m)
		assert.NotEmpty(t, v["type"])
	}
	var ev map[string]any
	require.NoError(t, json.Unmarshal(msgs[1], &ev))
	assert.Equal(t, map[string]any{"type": "event", "seq": 8.0, "data": "x", "from": "al\nice", "id": "id\"1"}, ev)
}

func TestDecodeClient(t *testing.T) {
	tests := []struct {
		line    string
		want    ClientMessage
		wantErr string
	}{
		{line: `{"type":"pong"}`, want: ClientMessage{Type: "pong"}},
		{line: `{"type":"ack","seq":5}`, want: ClientMessage{Type: "ack", Seq: 5}},
		{line: `{"type":"publish","id":"a","data":null}`, want: ClientMessage{Type: "publish", ID: "a", Data: []byte("null")}},
		{line: `{"type":"publish","id":"a","data":{"x":[1, 2]},"extra":1}`, want: ClientMessage{Type: "publish", ID: "a", Data: []byte(`{"x":[1, 2]}`)}},
		{line: `{"type":"publish","id":"a","data":` + "{\n}" + `}`, want: ClientMessage{Type: "publish", ID: "a", Data: []byte(`{}`)}},
		{line: `{`, wantErr: "malformed"},
		{line: `null`, wantErr: "not an object"},
		{line: `{"type":"nope"}`, wantErr: "unknown type"},
		{line: `{"type":"ack"}`, wantErr: "ack without seq"},
		{line: `{"type":"ack","seq":"1"}`, wantErr: "malformed"},
		{line: `{"type":"ack","seq":18446744073709551616}`, wantErr: "malformed"},
		{line: `{"type":"publish","data":1}`, wantErr: "without id"},
		{line: `{"type":"publish","id":"a"}`, wantErr: "without data"},
		{line: `{"type":"publish","id":"` + strings.Repeat("a", 65) + `","data":1}`, wantErr: "1-64 bytes"},
		{line: strings.Repeat("[", 20000) + strings.Repeat("]", 20000), wantErr: "malformed"},
		{line: `[{"type":"pong"}]`, wantErr: "not an object"},
		// Keys match exactly, once each.
		{line: `{"TYPE":"publish","ID":"a","DATA":1}`, wantErr: "missing type"},
		{line: `{"type":"publish","Id":"a","data":1}`, wantErr: "without id"},
		{line: `{"type":"publish","id":"a","Data":1}`, wantErr: "without data"},
		{line: `{"type":"ack","type":"publish","id":"a","data":1}`, wantErr: `repeated key "type"`},
		{line: `{"type":"publish","id":"a","id":"b","data":1}`, wantErr: `repeated key "id"`},
		{line: `{"type":"pong","x":1,"x":2}`, wantErr: `repeated key "x"`},
		{line: `{"type":"pong","\u0078":1,"x":2}`, wantErr: `repeated key "x"`},
		{line: manyKeys(40) + `,"k7":0}`, wantErr: `repeated key "k7"`},
		{line: manyKeys(40) + `}`, want: ClientMessage{Type: "pong"}},
		{line: `{"t\u0079pe":"pong"}`, want: ClientMessage{Type: "pong"}},
		{line: `{"type":7}`, wantErr: "type must be a string"},
		// Ids round-trip: what the server compares, stores and echoes is
		// exactly what the client sent.
		{line: `{"type":"publish","id":"c\ud800","data":1}`, wantErr: "lone surrogate"},
		{line: `{"type":"publish","id":"c\udc00","data":1}`, wantErr: "lone surrogate"},
		{line: `{"type":"publish","id":"\ud800\ud800","data":1}`, wantErr: "lone surrogate"},
		{line: `{"type":"publish","id":"\ud800x","data":1}`, wantErr: "lone surrogate"},
		{line: "{\"type\":\"publish\",\"id\":\"c\xff\",\"data\":1}", wantErr: "not valid UTF-8"},
		{line: "{\"type\":\"publish\",\"id\":\"\xed\xa0\x80\",\"data\":1}", wantErr: "not valid UTF-8"},
		{line: `{"type":"publish","id":null,"data":1}`, wantErr: "id must be a string"},
		{line: `{"type":"publish","id":"\ud83d\ude00 \u00e9\n\"\\\/","data":1}`, want: ClientMessage{Type: "publish", ID: "😀 é\n\"\\/", Data: []byte("1")}},
		{line: `{"type":"publish","id":"\ufffd","data":1}`, want: ClientMessage{Type: "publish", ID: "\ufffd", Data: []byte("1")}},
		{line: `{"type":"ack","seq":null}`, wantErr: "malformed"},
		{line: ` { "type" : "ack" , "seq" : 3 } `, want: ClientMessage{Type: "ack", Seq: 3}},
	}
	for _, tt := range tests {
		name := tt.line
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			got, err := DecodeClient([]byte(tt.line))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrProtocol)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want.Type, got.Type)
			assert.Equal(t, tt.want.ID, got.ID)
			assert.Equal(t, string(tt.want.Data), string(got.Data))
			assert.Equal(t, tt.want.Seq, got.Seq)
		})
	}
}

// manyKeys is the start of a pong with n distinct extra keys, without the
// closing brace.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString(`{"type":"pong"`)
	for i := range n {
		fmt.Fprintf(&b, `,"k%d":%d`, i, i)
	}
	return b.String()
}

func FuzzDecodeClient(f *testing.F) {
	for _, s := range []string{`{"type":"pong"}`, `{"type":"ack","seq":1}`, `{"type":"publish","id":"x","data":{"a":[1]}}`, `{`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := DecodeClient(line)
		if err != nil {
			return
		}
		if m.Type == TypePublish {
			if len(m.ID) == 0 || len(m.ID) > MaxIDLen || !json.Valid(m.Data) || strings.Contains(string(m.Data), "\n") {
				t.Fatalf("accepted bad publish %q -> %+v", line, m)
			}
		}
	})
}

func TestLines(t *testing.T) {
	tests := []struct {
		frame string
		want  []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a\n", []string{"a"}},
		{"a\nb", []string{"a", "b"}},
		{"\n\na\n \n\tb\n", []string{"a", "\tb"}},
	}
	for _, tt := range tests {
		var got []string
		for l := range Lines([]byte(tt.frame)) {
			got = append(got, string(l))
		}
		assert.Equal(t, tt.want, got, "%q", tt.frame)
	}
	n := 0
	for range Lines([]byte("a\nb\nc")) {
		n++
		if n == 2 {
			break
		}
	}
	assert.Equal(t, 2, n, "stops when the consumer does")
}

func TestTextFrame(t *testing.T) {
	for _, tc := range []struct {
		n      int
		header []byte
	}{
		{0, []byte{0x81, 0}},
		{1, []byte{0x81, 1}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{0xFFFF, []byte{0x81, 126, 0xFF, 0xFF}},
		{0x10000, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		payload := bytes.Repeat([]byte{'x'}, tc.n)
		buf := append(make([]byte, FrameHeadroom), payload...)
		f := TextFrame(buf)
		if !bytes.Equal(f[:len(tc.header)], tc.header) {
			t.Errorf("n=%d: header % x, want % x", tc.n, f[:len(tc.header)], tc.header)
		}
		if !bytes.Equal(f[len(tc.header):], payload) {
			t.Errorf("n=%d: payload changed", tc.n)
		}
	}
}

func BenchmarkDecodeClient(b *testing.B) {
	for _, line := range []string{
		`{"type":"publish","id":"p-12345","data":{"text":"hello, world","at":"2026-01-01T00:00:00Z"}}`,
		`{"type":"ack","seq":123456}`,
		`{"type":"pong"}`,
	} {
		b.Run(line[9:13], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeClient([]byte(line)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
