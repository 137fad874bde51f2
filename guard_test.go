package fanout

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// guardFrame is a masked client frame with a header that announces length
// (len(payload) when -1) and carries payload.
func guardFrame(b0 byte, length int64, payload []byte) []byte {
	n := uint64(len(payload))
	if length >= 0 {
		n = uint64(length)
	}
	out := []byte{b0}
	switch {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, 0x80|127), n)
	}
	key := [4]byte{1, 2, 3, 4}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

func guardClose(code uint16, reason string) []byte {
	return guardFrame(0x88, -1, append(binary.BigEndian.AppendUint16(nil, code), reason...))
}

// chunked reads one chunk of its data per Read.
type chunked struct {
	data []byte
	size int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.size, len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestFrameGuard feeds client byte streams through the guard in chunks of
// every size and checks which frame it stops at, with what code, and that
// everything before that frame's last examined byte is passed on.
func TestFrameGuard(t *testing.T) {
	const limit = 1000
	text := func(s string) []byte { return guardFrame(0x81, -1, []byte(s)) }
	ping := guardFrame(0x89, -1, []byte("p"))
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	repeat := func(b []byte, n int) []byte { return bytes.Repeat(b, n) }
	tests := []struct {
		name   string
		stream []byte
		burst  int       // inbound burst; 0: plenty
		code   CloseCode // 0: passed whole
		passed int       // with code: at most this many bytes passed
	}{
		{name: "small frames", stream: cat(text("a"), ping, text("b"), guardClose(1000, "bye ✓"))},
		{name: "frame at the limit", stream: text(string(make([]byte, limit)))},
		{name: "16-bit and 64-bit lengths", stream: cat(guardFrame(0x81, -1, make([]byte, 300)), guardFrame(0x01, -1, make([]byte, 200)), guardFrame(0x80, -1, make([]byte, 500)))},
		{name: "empty close", stream: guardFrame(0x88, -1, nil)},
		{name: "unmasked frames are the library's to refuse", stream: cat([]byte{0x81, 0x01, 'x'}, text("y"))},
		{name: "header over the limit", stream: cat(text("a"), guardFrame(0x81, limit+1, nil)), code: CloseTooBig, passed: 7 + 3},
		{name: "header announcing 2^63-1", stream: guardFrame(0x81, 1<<63-1, nil), code: CloseTooBig, passed: 9},
		{name: "header announcing 2^64-1", stream: []byte{0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}, code: CloseTooBig, passed: 9},
		{name: "truncated header", stream: []byte{0x81, 0xFF, 0xFF}},
		{name: "fragments over the limit", stream: cat(guardFrame(0x01, -1, make([]byte, 600)), guardFrame(0x80, 401, nil)), code: CloseTooBig, passed: 608 + 3},
		{name: "control frames between fragments do not reset the count", stream: cat(guardFrame(0x01, -1, make([]byte, 600)), ping, guardFrame(0x80, 401, nil)), code: CloseTooBig, passed: 608 + 7 + 3},
		{name: "a new message resets the count", stream: cat(text(string(make([]byte, 600))), text(string(make([]byte, 600))))},
		{name: "ping flood", stream: repeat(ping, 50), burst: 10, code: ClosePolicy, passed: 10 * 7},
		{name: "pong flood", stream: repeat(guardFrame(0x8A, -1, nil), 50), burst: 10, code: ClosePolicy, passed: 10 * 6},
		{name: "text frames do not count here", stream: repeat(text("x"), 50), burst: 10},
		{name: "close reason not UTF-8", stream: cat(text("a"), guardClose(1000, "\xff\xfe")), code: CloseInvalidData, passed: 7 + 6 + 3},
		{name: "close reason cut inside a character", stream: guardClose(1000, "ok\xe2\x9c"), code: CloseInvalidData, passed: 6 + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for size := 1; size <= len(tt.stream); size++ {
				burst := tt.burst
				if burst == 0 {
					burst = 1 << 20
				}
				// A rate that never refills within the test.
				g := newFrameGuard(limit, rate.NewLimiter(rate.Limit(1e-9), burst))
				g.src = &chunked{data: tt.stream, size: size}
				got, err := io.ReadAll(g)
				ce := g.broken.Load()
				if tt.code == 0 {
					require.NoError(t, err, "chunks of %d", size)
					require.Nil(t, ce, "chunks of %d", size)
					require.Equal(t, tt.stream, got, "chunks of %d", size)
					continue
				}
				require.True(t, errors.Is(err, errGuard), "chunks of %d: %v", size, err)
				require.NotNil(t, ce, "chunks of %d", size)
				assert.Equal(t, tt.code, ce.Code, "chunks of %d", size)
				assert.LessOrEqual(t, len(got), tt.passed, "chunks of %d", size)
				assert.Equal(t, tt.stream[:len(got)], got, "chunks of %d", size)
				_, err = g.Read(make([]byte, 10))
				assert.ErrorIs(t, err, errGuard, "a refused stream stays refused")
			}
		})
	}
}

// BenchmarkFrameGuard is the guard's cost on the bytes it follows: large
// frames, whose payload it skips, and small ones, whose headers it reads.
func BenchmarkFrameGuard(b *testing.B) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"64KiB", guardFrame(0x81, -1, make([]byte, 64<<10))},
		{"100B", guardFrame(0x81, -1, make([]byte, 100))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			stream := bytes.Repeat(tc.frame, max(1, (256<<10)/len(tc.frame)))
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				g := newFrameGuard(64<<10, nil)
				g.src = bytes.NewReader(stream)
				for {
					if _, err := g.Read(buf); err != nil {
						break
					}
				}
			}
		})
	}
}
