package wire

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// DecodeEvent reads back what AppendEvent wrote, the same as
// encoding/json would, whatever the data, identity and id hold.
func TestDecodeEventRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, data, from, id string
	}{
		{"number", `1`, "", ""},
		{"string", `"a}b,c"`, "", ""},
		{"object", `{"a":[1,{"b":"}]"}],"c":null}`, "", ""},
		{"array", `[[],{},"\"",true]`, "", ""},
		{"escaped string", `"\\\"}"`, "", ""},
		{"client publish", `{"text":"hi"}`, "ann", "p1"},
		{"identity to escape", `{}`, "<a \"b\">\n&", "id\\"},
		{"anonymous client", `false`, "", "x"},
		{"data looking like the tail", `",\"from\":\"x\",\"id\":\"y\"}"`, "u", "i"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendEvent(nil, 42, []byte(tc.data), tc.from, tc.id)
			got, err := DecodeEvent(b)
			require.NoError(t, err)
			var want Event
			require.NoError(t, json.Unmarshal(b, &want))
			require.Equal(t, want, got)
			_, fast := decodeEventFast(b)
			require.True(t, fast, "decoded without encoding/json")
			require.Equal(t, uint64(42), got.Seq)
			require.Equal(t, tc.data, string(got.Data))
			require.Equal(t, tc.id, got.ID)
			if tc.id != "" {
				require.Equal(t, tc.from, got.From)
			}
		})
	}
}

// Anything else falls back to encoding/json, or fails clearly.
func TestDecodeEventOther(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"other field order", `{"seq":3,"type":"event","data":1}`, true},
		{"truncated", `{"type":"event","seq":3,"data":{"a":`, false},
		{"not JSON", `nope`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(tc.in))
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"a":"}"}`), "u", "i")
	f.Add([]byte(`"\\"`), "", "")
	f.Fuzz(func(t *testing.T, data []byte, from, id string) {
		if !json.Valid(data) {
			return
		}
		b := AppendEvent(nil, 7, Compact(data), from, id)
		if !json.Valid(b) {
			return // Compact keeps data with raw newlines in strings invalid
		}
		got, err := DecodeEvent(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		var want Event
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if string(got.Data) != string(want.Data) || got.From != want.From || got.ID != want.ID || got.Seq != 7 {
			t.Fatalf("decode %s: got %+v, want %+v", b, got, want)
		}
	})
}
