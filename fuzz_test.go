package fanout_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// FuzzResumeQuery feeds arbitrary query strings to the resume parser, both
// directly and through ServeHTTP: the parser must agree with a plain
// statement of the rules in PROTOCOL.md, and the handler must answer 400
// exactly when the parser refuses (426 otherwise, as the request is no
// upgrade), never anything else and never panic.
func FuzzResumeQuery(f *testing.F) {
	for _, q := range []string{
		"", "after=0", "after=5&epoch=0123456789abcdef", "after=18446744073709551615", "after=18446744073709551616",
		"after=-1", "after=%2B1", "after=0x10", "after=00000000000000000001", "after=", "after=1&after=2",
		"epoch=e", "after=1&epoch=", "after=1&epoch=" + strings.Repeat("e", 65), "after=1;epoch=x", "after=%zz",
		"after=1&epoch=%00", "after=%E2%80%A8",
	} {
		f.Add(q)
	}
	s, err := fanout.NewSession("fuzz")
	require.NoError(f, err)
	f.Cleanup(func() { _ = s.Close() })

	f.Fuzz(func(t *testing.T, rawQuery string) {
		q := (&url.URL{RawQuery: rawQuery}).Query() // as ServeHTTP sees it
		resume, after, epoch, err := fanout.ParseResume(q)
		want := resumeRule(q)
		if (err == nil) != want.ok {
			t.Fatalf("query %q: parser says %v, the rules say ok=%v", rawQuery, err, want.ok)
		}
		if err == nil && (resume != want.resume || after != want.after || epoch != want.epoch) {
			t.Fatalf("query %q: parsed (%v, %d, %q), want (%v, %d, %q)", rawQuery, resume, after, epoch, want.resume, want.after, want.epoch)
		}

		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.RawQuery = rawQuery
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		wantStatus := http.StatusUpgradeRequired
		if !want.ok {
			wantStatus = http.StatusBadRequest
		}
		if rec.Code != wantStatus {
			t.Fatalf("query %q: status %d, want %d", rawQuery, rec.Code, wantStatus)
		}
	})
}

type resumeWant struct {
	ok, resume bool
	after      uint64
	epoch      string
}

// resumeRule states PROTOCOL.md's rules for after and epoch.
func resumeRule(q url.Values) resumeWant {
	afters, epochs := q["after"], q["epoch"]
	switch {
	case len(afters) > 1 || len(epochs) > 1:
		return resumeWant{}
	case len(afters) == 0:
		return resumeWant{ok: len(epochs) == 0}
	}
	a := afters[0]
	if len(a) == 0 || len(a) > 20 || strings.TrimLeft(a, "0123456789") != "" {
		return resumeWant{}
	}
	n, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return resumeWant{}
	}
	w := resumeWant{ok: true, resume: true, after: n}
	if len(epochs) == 1 {
		if len(epochs[0]) < 1 || len(epochs[0]) > 64 {
			return resumeWant{}
		}
		w.epoch = epochs[0]
	}
	return w
}

// Ways FuzzFrames sends its payload.
const (
	frameText      = iota // one text frame
	frameFragments        // a text frame and a continuation, split in the middle
	frameBinary           // one binary frame
	frameRaw              // the bytes as they are, framing and all
	frameModes
)

// FuzzFrames sends arbitrary frames to a live session connection, then ends
// its side of the connection. Whatever it sent, the server's answer must be
// well-formed (frames, JSON lines, close codes), the connection must end,
// and a bystander must still receive, in order, every event the input
// appended and one published after it.
func FuzzFrames(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s.mode, s.payload)
	}
	fz := newFrameFuzzer(f)
	f.Fuzz(func(t *testing.T, mode byte, payload []byte) { fz.run(t, mode, payload) })
}

type frameSeed struct {
	mode    byte
	payload []byte
}

func frameSeeds() []frameSeed {
	text := func(s string) frameSeed { return frameSeed{frameText, []byte(s)} }
	return []frameSeed{
		text(`{"type":"pong"}`),
		text(`{"type":"ack","seq":0}`),
		text(publishMsg("a", `{"x":[1,2,{"y":null}]}`)),
		text(publishMsg("a", "1") + "\n" + publishMsg("b", `"two"`) + "\r\n" + `{"type":"pong"}`),
		text(`{"type":"ack","seq":1}`),
		text(`{"type":`),
		text(`{"type":"publish","id":"` + strings.Repeat("i", 65) + `","data":1}`),
		text(strings.Repeat("[", 3000)),
		text(floodPublishes(120)),
		{frameFragments, []byte(publishMsg("frag", `{"split":"here"}`))},
		{frameBinary, []byte(`{"type":"pong"}`)},
		{frameRaw, frameSpec{op: opPing, payload: []byte("hello")}.encode()},
		{frameRaw, closeFrame(1000, "bye")},
		{frameRaw, closeFrame(4001, "")},
		{frameRaw, []byte{0x81, 0xFE, 0x01}},
		{frameRaw, frameSpec{op: opText, rsv: 0x40, payload: []byte("x")}.encode()},
		{frameRaw, frameSpec{op: opText, unmasked: true, payload: []byte(`{"type":"pong"}`)}.encode()},
		{frameRaw, frameSpec{op: opText, length: 1 << 62, payload: []byte("x")}.encode()},
	}
}

// fuzzMaxMessage is the fuzzed session's maximum message size, small so
// that inputs of a few KiB reach it.
const fuzzMaxMessage = 4096

// frameFuzzer is one session with a bystander, shared by the inputs of a
// fuzzing process (which runs them one at a time).
type frameFuzzer struct {
	s     *fanout.Session
	addr  string
	by    *rawConn
	last  uint64
	epoch string
}

func newFrameFuzzer(f *testing.F) *frameFuzzer {
	s, err := fanout.NewSession("fuzz", fanout.WithMaxMessageSize(fuzzMaxMessage), fanout.WithWriteTimeout(time.Second))
	require.NoError(f, err)
	hs := httptest.NewServer(s)
	f.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	fz := &frameFuzzer{s: s, addr: strings.TrimPrefix(hs.URL, "http://"), epoch: s.Epoch()}
	res, err := rawHandshake(fz.addr, "", nil)
	require.NoError(f, err)
	require.NotNil(f, res.conn)
	fz.by = res.conn
	f.Cleanup(func() { _ = fz.by.nc.Close() })
	return fz
}

func (fz *frameFuzzer) run(t *testing.T, mode byte, payload []byte) {
	before := fz.s.Stats()
	res, err := rawHandshake(fz.addr, "", nil)
	require.NoError(t, err)
	require.NotNil(t, res.conn, "status %d %s", res.status, res.body)
	c := res.conn
	defer c.nc.Close()

	var in []byte
	switch mode % frameModes {
	case frameText:
		in = frameSpec{op: opText, payload: payload}.encode()
	case frameFragments:
		half := len(payload) / 2
		in = frameSpec{op: opText, notFin: true, payload: payload[:half]}.encode()
		in = append(in, frameSpec{op: opContinuation, payload: payload[half:]}.encode()...)
	case frameBinary:
		in = frameSpec{op: opBinary, payload: payload}.encode()
	case frameRaw:
		in = payload
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.nc.Write(in) // the server may close before reading it all
	_ = c.nc.(*net.TCPConn).CloseWrite()

	// Everything the server sends must be well-formed, up to the end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev := c.read(time.Until(deadline))
		if ev.eof {
			break
		}
		require.NoError(t, ev.err, "mode %d, input %q", mode, in)
		if ev.closeCode != 0 {
			require.True(t, validCloseCode(ev.closeCode), "close code %d", ev.closeCode)
		}
	}
	fz.settle(t, before)
}

// validCloseCode reports whether a server may send code in a close frame.
func validCloseCode(code int) bool {
	switch {
	case code == 1005: // an empty close frame, as read by rawConn
		return true
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// settle waits for the fuzzed connection to be gone, then publishes a
// marker and checks that the bystander receives every event up to it in
// order.
func (fz *frameFuzzer) settle(t *testing.T, before fanout.Stats) {
	deadline := time.Now().Add(10 * time.Second)
	for fz.s.Stats().Connections != 1 {
		if time.Now().After(deadline) {
			require.FailNow(t, "the fuzzed connection did not end")
		}
		time.Sleep(100 * time.Microsecond)
	}
	marker, err := fz.s.Publish(t.Context(), fmt.Appendf(nil, `{"marker":%d}`, before.Head))
	require.NoError(t, err)
	deadline = time.Now().Add(10 * time.Second)
	for fz.last < marker {
		ev := fz.by.read(time.Until(deadline))
		require.NoError(t, ev.err)
		require.False(t, ev.eof || ev.closeCode != 0, "the bystander was disconnected: %d %s", ev.closeCode, ev.closeMsg)
		for _, m := range ev.msgs {
			if m.Type != "event" {
				continue
			}
			require.Equal(t, fz.last+1, m.Seq, "the bystander got a gap or a reorder")
			fz.last = m.Seq
		}
	}
	st := fz.s.Stats()
	require.Equal(t, marker, st.Head)
	require.Equal(t, st.Head, st.Published)
	require.Equal(t, fz.epoch, st.Epoch)
}
