package fanout_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// The hostile-input session's limits: small enough that each can be reached
// by one test case, long enough that honest traffic never reaches them.
const (
	hostileMaxConns         = 16
	hostileHeartbeat        = 500 * time.Millisecond
	hostileHeartbeatTimeout = 1500 * time.Millisecond
	hostileWriteLimit       = time.Second
	// hostileSendBuffer is the server's socket send buffer, small so that a
	// client that does not read blocks the server's writes soon.
	hostileSendBuffer = 32 << 10
	hostileHeaderWait = 300 * time.Millisecond // http.Server.ReadHeaderTimeout
	maxMessage        = 64 << 10               // the default maximum message size
)

// outcome is what a hostile input must lead to.
type outcome struct {
	status   int    // HTTP status of the handshake; 0 means 101 Switching Protocols
	resumed  *bool  // the welcome's resumed flag, when it matters
	close    int    // the close code the server sends; 0: the connection stays open
	drop     bool   // the server ends the TCP connection without a close frame
	reason   int    // the server's Conn.CloseReason code; 0: the same as close
	errCode  string // an error message with this code arrives before the close (if any)
	acks     int    // acks that arrive; -1: any number (a flood)
	appended int    // events the input appends to the log; -1: some (a flood)
	slow     int    // slow-consumer closes the input causes
}

// hostileCase is one hostile input. Most are a handshake (query, hdr)
// followed by raw bytes (frames); scenarios that take more than that are a
// run function.
type hostileCase struct {
	name      string
	query     string      // handshake query; {EPOCH} and {HEAD+1} are replaced
	hdr       http.Header // handshake headers; nil: an authenticated "mallory"
	frames    [][]byte    // written after the welcome, in one write
	framesFor func(welcome msg) [][]byte
	hangup    bool            // close the TCP connection right after writing
	silent    bool            // never answer pings
	opts      []fanout.Option // the session's options besides the harness's
	mute      bool            // answer the server's close frame by hanging up, not with a close frame
	run       func(t *testing.T, h *hostileHarness)
	want      outcome
	check     func(t *testing.T, bystander []msg) // what the bystander received
}

// TestHostileInputs throws every kind of hostile input at a session, each
// at a fresh one, with a bystander connected throughout. After each input
// it checks the input's expected result (HTTP status, close code, error
// code), that nothing it should not have appended was appended, that the
// bystander still receives a publish made after it, in order, and that the
// session's figures are sane.
func TestHostileInputs(t *testing.T) {
	cases := hostileCases()
	require.GreaterOrEqual(t, len(cases), 40)
	// Each case gets a session, a server and a bystander of its own, so
	// that one case's failure cannot spill into the next.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostileHarness(t, tc.opts...)
			h.run(t, tc)
		})
	}
}

func bptr(b bool) *bool { return &b }

func publishMsg(id, data string) string {
	return fmt.Sprintf(`{"type":"publish","id":%q,"data":%s}`, id, data)
}

func repeatLines(line string, n int) string { return strings.Repeat(line+"\n", n) }

func hostileCases() []hostileCase {
	with := func(k, v string) http.Header {
		hd := user("mallory")
		hd.Set(k, v)
		return hd
	}
	withAll := func(kv ...string) http.Header {
		hd := user("mallory")
		for i := 0; i < len(kv); i += 2 {
			hd.Set(kv[i], kv[i+1])
		}
		return hd
	}
	reject := func(status int) outcome { return outcome{status: status} }
	proto := outcome{close: 4000}
	badText := outcome{close: 1007}
	wsProto := outcome{close: 1002, reason: 1006} // the WebSocket layer's own protocol errors
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	id65 := strings.Repeat("i", 65)

	return []hostileCase{
		// The handshake.
		{name: "unauthenticated upgrade", hdr: http.Header{}, want: reject(401)},
		{name: "empty identity", hdr: http.Header{"X-User": {""}}, want: reject(401)},
		{name: "cross-origin upgrade (CSWSH)", hdr: with("Origin", "https://evil.example"), want: reject(403)},
		{name: "look-alike origin", hdr: with("Origin", "https://trusted.example.evil.example"), want: reject(403)},
		{name: "origin with userinfo trick", hdr: with("Origin", "https://trusted.example@evil.example"), want: reject(403)},
		{name: "opaque null origin", hdr: with("Origin", "null"), want: reject(403)},
		{name: "allowed origin", hdr: with("Origin", "https://trusted.example"), want: outcome{}},
		{name: "DNS rebinding: foreign host, same origin", hdr: withAll("Host", "evil.example:18777", "Origin", "http://evil.example:18777"), want: reject(403)},
		{name: "foreign host, no origin", hdr: with("Host", "evil.example"), want: reject(403)},
		{name: "listed host in other case", hdr: with("Host", "LOCALHOST"), want: outcome{}},
		{name: "negative after", query: "after=-1", want: reject(400)},
		{name: "non-numeric after", query: "after=abc", want: reject(400)},
		{name: "overflowing after", query: "after=18446744073709551616", want: reject(400)},
		{name: "after of 21 digits", query: "after=000000000000000000001", want: reject(400)},
		{name: "hexadecimal after", query: "after=0x10", want: reject(400)},
		{name: "signed after", query: "after=%2B1", want: reject(400)},
		{name: "after with a space", query: "after=%201", want: reject(400)},
		{name: "empty after", query: "after=", want: reject(400)},
		{name: "repeated after", query: "after=1&after=2", want: reject(400)},
		{name: "epoch without after", query: "epoch={EPOCH}", want: reject(400)},
		{name: "empty epoch", query: "after=0&epoch=", want: reject(400)},
		{name: "oversized epoch", query: "after=0&epoch=" + strings.Repeat("e", 65), want: reject(400)},
		{name: "huge epoch", query: "after=0&epoch=" + strings.Repeat("e", 8<<10), want: reject(400)},
		{name: "wrong epoch", query: "after=0&epoch=ffffffffffffffff", want: outcome{resumed: bptr(false)}},
		{name: "wrong epoch of 64 bytes", query: "after=0&epoch=" + strings.Repeat("e", 64), want: outcome{resumed: bptr(false)}},
		{name: "after beyond head", query: "after={HEAD+1}&epoch={EPOCH}", want: outcome{resumed: bptr(false)}},
		{name: "after at max uint64", query: "after=18446744073709551615&epoch={EPOCH}", want: outcome{resumed: bptr(false)}},
		{name: "not a WebSocket upgrade", hdr: with("Upgrade", "h2c"), want: reject(426)},
		{name: "unsupported WebSocket version", hdr: with("Sec-WebSocket-Version", "8"), want: reject(400)},
		{name: "malformed WebSocket key", hdr: with("Sec-WebSocket-Key", "short"), want: reject(400)},
		{name: "slowloris handshake", run: slowlorisHandshake, want: outcome{}},
		{name: "many connections from one identity", run: manyConnsOneIdentity, want: outcome{}},

		// Malformed messages: 4000, nothing appended.
		{name: "malformed JSON", frames: [][]byte{textFrame(`{"type":`)}, want: proto},
		{name: "truncated message", frames: [][]byte{textFrame(`{"type":"publish","id":"t","data":{"a":[1,2`)}, want: proto},
		{name: "array instead of object", frames: [][]byte{textFrame(`[1,2]`)}, want: proto},
		{name: "JSON null", frames: [][]byte{textFrame(`null`)}, want: proto},
		{name: "bare string", frames: [][]byte{textFrame(`"publish"`)}, want: proto},
		{name: "missing type", frames: [][]byte{textFrame(`{"id":"1","data":1}`)}, want: proto},
		{name: "type of wrong type", frames: [][]byte{textFrame(`{"type":["publish"]}`)}, want: proto},
		{name: "unknown type", frames: [][]byte{textFrame(`{"type":"subscribe"}`)}, want: proto},
		{name: "type in other case", frames: [][]byte{textFrame(`{"type":"PUBLISH","id":"x","data":1}`)}, want: proto},
		{name: "server-only type", frames: [][]byte{textFrame(`{"type":"event","seq":1,"data":1}`)}, want: proto},
		{name: "duplicate type key", frames: [][]byte{textFrame(`{"type":"pong","type":"subscribe"}`)}, want: proto},
		{name: "keys in other case", frames: [][]byte{textFrame(`{"TYPE":"publish","ID":"k","DATA":1}`)}, want: proto},
		{name: "id key in other case", frames: [][]byte{textFrame(`{"type":"publish","Id":"k","data":1}`)}, want: proto},
		{name: "repeated type key, the last a publish", frames: [][]byte{textFrame(`{"type":"ack","type":"publish","id":"d","data":1}`)}, want: proto},
		{name: "repeated id key", frames: [][]byte{textFrame(`{"type":"publish","id":"d1","id":"d2","data":1}`)}, want: proto},
		{name: "repeated unknown key", frames: [][]byte{textFrame(`{"type":"publish","id":"d3","data":1,"x":1,"x":2}`)}, want: proto},
		{name: "publish id with a lone high surrogate", frames: [][]byte{textFrame(`{"type":"publish","id":"c\ud800","data":1}`)}, want: proto},
		{name: "publish id with a lone low surrogate", frames: [][]byte{textFrame(`{"type":"publish","id":"c\udc00","data":1}`)}, want: proto},
		{name: "ids that collided after a lossy decode", run: surrogateIDsDoNotCollide, want: outcome{appended: 1}},
		{name: "two values on one line", frames: [][]byte{textFrame(`{"type":"pong"}{"type":"pong"}`)}, want: proto},
		{name: "NUL byte after the value", frames: [][]byte{textFrame("{\"type\":\"pong\"}\x00")}, want: proto},
		{name: "raw control byte in a string", frames: [][]byte{textFrame("{\"type\":\"publish\",\"id\":\"a\",\"data\":\"\x01\"}")}, want: proto},
		{name: "publish without id", frames: [][]byte{textFrame(`{"type":"publish","data":1}`)}, want: proto},
		{name: "publish with empty id", frames: [][]byte{textFrame(publishMsg("", "1"))}, want: proto},
		{name: "publish id of 65 bytes", frames: [][]byte{textFrame(publishMsg(id65, "1"))}, want: proto},
		{name: "huge publish id", frames: [][]byte{textFrame(publishMsg(strings.Repeat("h", 60<<10), "1"))}, want: proto},
		{name: "publish id a number", frames: [][]byte{textFrame(`{"type":"publish","id":7,"data":1}`)}, want: proto},
		{name: "publish id an object", frames: [][]byte{textFrame(`{"type":"publish","id":{"$ne":""},"data":1}`)}, want: proto},
		{name: "publish without data", frames: [][]byte{textFrame(`{"type":"publish","id":"a"}`)}, want: proto},
		{name: "deep JSON nesting", frames: [][]byte{textFrame(publishMsg("deep", deep))}, want: proto},
		{name: "raw newline inside data", frames: [][]byte{textFrame("{\"type\":\"publish\",\"id\":\"n\",\"data\":{\n}}")}, want: proto},
		{name: "good publish then garbage", frames: [][]byte{textFrame(publishMsg("g1", "1") + "\n{oops")},
			want: outcome{close: 4000, acks: 1, appended: 1}},
		{name: "ack without seq", frames: [][]byte{textFrame(`{"type":"ack"}`)}, want: proto},
		{name: "ack seq a string", frames: [][]byte{textFrame(`{"type":"ack","seq":"1"}`)}, want: proto},
		{name: "ack negative", frames: [][]byte{textFrame(`{"type":"ack","seq":-1}`)}, want: proto},
		{name: "ack fractional", frames: [][]byte{textFrame(`{"type":"ack","seq":1.5}`)}, want: proto},
		{name: "ack in exponent form", frames: [][]byte{textFrame(`{"type":"ack","seq":1e3}`)}, want: proto},
		{name: "ack overflowing", frames: [][]byte{textFrame(`{"type":"ack","seq":18446744073709551616}`)}, want: proto},
		{name: "ack beyond what was sent", framesFor: func(w msg) [][]byte {
			return [][]byte{textFrame(fmt.Sprintf(`{"type":"ack","seq":%d}`, w.Head+1))}
		}, want: proto},
		{name: "ack at max uint64", frames: [][]byte{textFrame(`{"type":"ack","seq":18446744073709551615}`)}, want: proto},

		// RFC 6455 section 8.1: text that is not UTF-8 fails with 1007.
		{name: "invalid UTF-8 in the publish id", frames: [][]byte{textFrame("{\"type\":\"publish\",\"id\":\"\xff\",\"data\":\"ok\"}")}, want: badText},
		{name: "invalid UTF-8 in publish data", frames: [][]byte{textFrame("{\"type\":\"publish\",\"id\":\"u\",\"data\":\"\xfe\"}")}, want: badText},
		{name: "invalid UTF-8 outside strings", frames: [][]byte{textFrame("{\"type\":\"pong\"}\xff")}, want: badText},
		{name: "invalid UTF-8 in an ignored field", frames: [][]byte{textFrame("{\"type\":\"pong\",\"x\":\"\xc3\x28\"}")}, want: badText},
		{name: "UTF-8 encoded surrogate", frames: [][]byte{textFrame("{\"type\":\"pong\",\"x\":\"\xed\xa0\x80\"}")}, want: badText},
		{name: "invalid UTF-8 on a blank line", frames: [][]byte{textFrame("{\"type\":\"pong\"}\n\xff\n")}, want: badText},
		{name: "close reason not UTF-8", frames: [][]byte{closeFrame(1000, "\xff\xfe")}, want: badText},
		{name: "close reason cut inside a character", frames: [][]byte{closeFrame(1000, "ok\xe2\x9c")}, want: badText},
		{name: "close reason in UTF-8", frames: [][]byte{closeFrame(1000, "bye ✓")}, want: outcome{close: 1000}},
		{name: "character split across fragments", frames: [][]byte{
			frameSpec{op: opText, notFin: true, payload: []byte("{\"type\":\"publish\",\"id\":\"split\xc3")}.encode(),
			frameSpec{op: opContinuation, payload: []byte("\xa9\",\"data\":1}")}.encode(),
		}, want: outcome{acks: 1, appended: 1}},

		// Frames.
		{name: "binary frame", frames: [][]byte{binaryFrame(`{"type":"pong"}`)}, want: proto},
		{name: "empty binary frame", frames: [][]byte{binaryFrame("")}, want: proto},
		{name: "oversize message", frames: [][]byte{textFrame(publishMsg("big", `"`+strings.Repeat("x", maxMessage)+`"`))},
			want: outcome{close: 1009}},
		{name: "oversize fragmented message", frames: [][]byte{
			frameSpec{op: opText, notFin: true, payload: []byte(`{"type":"publish","id":"f","data":"` + strings.Repeat("x", 30000))}.encode(),
			frameSpec{op: opContinuation, notFin: true, payload: []byte(strings.Repeat("x", 30000))}.encode(),
			frameSpec{op: opContinuation, payload: []byte(strings.Repeat("x", 30000) + `"}`)}.encode(),
		}, want: outcome{close: 1009}},
		{name: "frame claiming 2^62 bytes", frames: [][]byte{
			frameSpec{op: opText, payload: make([]byte, maxMessage+1), length: 1 << 62}.encode(),
		}, want: outcome{close: 1009}},
		{name: "header claiming 2^63-1 bytes, then silence", frames: [][]byte{
			frameSpec{op: opText, length: 1<<63 - 1}.encode(),
		}, silent: true, want: outcome{close: 1009}},
		{name: "header claiming 2^63 bytes", frames: [][]byte{
			frameSpec{op: opText, length: 1 << 63}.encode(),
		}, want: outcome{close: 1009}},
		{name: "header one byte over the limit, then silence", frames: [][]byte{
			frameSpec{op: opText, length: maxMessage + 1}.encode(),
		}, silent: true, want: outcome{close: 1009}},
		{name: "fragment header taking the message over the limit", frames: [][]byte{
			frameSpec{op: opText, notFin: true, payload: []byte(`{"type":"publish","id":"f","data":"` + strings.Repeat("x", 40000))}.encode(),
			frameSpec{op: opContinuation, length: 30000}.encode(),
		}, silent: true, want: outcome{close: 1009}},
		{name: "unmasked frame", frames: [][]byte{frameSpec{op: opText, unmasked: true, payload: []byte(`{"type":"pong"}`)}.encode()},
			want: outcome{drop: true, reason: 1006}},
		{name: "reserved bits set", frames: [][]byte{frameSpec{op: opText, rsv: 0x70, payload: []byte(`{"type":"pong"}`)}.encode()}, want: wsProto},
		{name: "unknown opcode", frames: [][]byte{frameSpec{op: 0x3, payload: []byte("x")}.encode()}, want: wsProto},
		{name: "continuation without a start", frames: [][]byte{frameSpec{op: opContinuation, payload: []byte(`{"type":"pong"}`)}.encode()}, want: wsProto},
		{name: "new message inside a fragmented one", frames: [][]byte{
			frameSpec{op: opText, notFin: true, payload: []byte(`{"type":`)}.encode(),
			textFrame(`{"type":"pong"}`),
		}, want: wsProto},
		{name: "fragmented control frame", frames: [][]byte{frameSpec{op: opPing, notFin: true, payload: []byte("p")}.encode()}, want: wsProto},
		{name: "oversized control frame", frames: [][]byte{frameSpec{op: opPing, payload: make([]byte, 126)}.encode()}, want: wsProto},
		{name: "close frame of one byte", frames: [][]byte{frameSpec{op: opClose, payload: []byte{3}}.encode()}, want: wsProto},
		{name: "close frame with a reserved code", frames: [][]byte{closeFrame(1005, "")}, want: wsProto},
		{name: "close claiming slow consumer", frames: [][]byte{closeFrame(4001, "I am slow")}, want: outcome{close: 4001}},
		{name: "truncated frame header, then hang up", frames: [][]byte{{0x81}}, hangup: true, want: outcome{reason: 1006}},
		{name: "truncated extended length, then hang up", frames: [][]byte{{0x81, 0xFE, 0x01}}, hangup: true, want: outcome{reason: 1006}},
		{name: "truncated payload, then hang up", frames: [][]byte{
			frameSpec{op: opText, payload: []byte(`{"type":"pub`), length: 100}.encode(),
		}, hangup: true, want: outcome{reason: 1006}},
		{name: "truncated frame, then silence", frames: [][]byte{{0x81, 0x8F, 0x00}}, silent: true, mute: true, want: outcome{close: 4002}},
		{name: "silence, no pongs", silent: true, want: outcome{close: 4002}},

		// Inputs that are odd but valid: answered, connection kept.
		{name: "empty text frame", frames: [][]byte{textFrame("")}, want: outcome{}},
		{name: "only blank lines", frames: [][]byte{textFrame("\n\n \t\n\r\n")}, want: outcome{}},
		{name: "CRLF between messages", frames: [][]byte{textFrame(publishMsg("crlf1", "1") + "\r\n" + publishMsg("crlf2", "2") + "\r\n")},
			want: outcome{acks: 2, appended: 2}},
		{name: "fragmented publish", frames: [][]byte{
			frameSpec{op: opText, notFin: true, payload: []byte(`{"type":"publish",`)}.encode(),
			frameSpec{op: opPing, payload: []byte("between fragments")}.encode(),
			frameSpec{op: opContinuation, payload: []byte(`"id":"frag","data":{"ok":true}}`)}.encode(),
		}, want: outcome{acks: 1, appended: 1}},
		{name: "client ping frame", frames: [][]byte{frameSpec{op: opPing, payload: []byte("hi")}.encode()}, want: outcome{}},
		{name: "publish id of 64 bytes", frames: [][]byte{textFrame(publishMsg(strings.Repeat("i", 64), "1"))}, want: outcome{acks: 1, appended: 1}},
		{name: "ack of exactly what was sent", framesFor: func(w msg) [][]byte {
			return [][]byte{textFrame(fmt.Sprintf(`{"type":"ack","seq":%d}`, w.Head))}
		}, want: outcome{}},
		{name: "nesting of 500 levels", frames: [][]byte{textFrame(publishMsg("nest", strings.Repeat("[", 500)+strings.Repeat("]", 500)))},
			want: outcome{acks: 1, appended: 1}},
		{name: "huge number", frames: [][]byte{textFrame(publishMsg("num", "1"+strings.Repeat("0", 1000)+"e999999"))},
			want: outcome{acks: 1, appended: 1},
			check: func(t *testing.T, evs []msg) {
				require.Len(t, evs, 1)
				assert.Equal(t, "1"+strings.Repeat("0", 1000)+"e999999", string(evs[0].Data), "data is passed on verbatim")
			}},
		{name: "unknown extra fields", frames: [][]byte{textFrame(`{"type":"publish","id":"x1","data":1,"seq":99,"epoch":"e","admin":true}`)},
			want: outcome{acks: 1, appended: 1}},

		// Abuse.
		{name: "identity spoofing through from", frames: [][]byte{textFrame(`{"type":"publish","id":"spoof","from":"bystander","data":{"from":"bystander"}}`)},
			want: outcome{acks: 1, appended: 1},
			check: func(t *testing.T, evs []msg) {
				require.Len(t, evs, 1)
				assert.Equal(t, "mallory", evs[0].From, "the server sets from")
				assert.Equal(t, "spoof", evs[0].ID)
			}},
		{name: "replaying another identity's publish id", run: replayOthersID, want: outcome{appended: 2}},
		{name: "publish flood in one frame", frames: [][]byte{textFrame(floodPublishes(250))},
			want: outcome{errCode: "rate_limited", close: 1008, acks: -1, appended: -1}},
		{name: "publish flood in many frames", framesFor: func(msg) [][]byte {
			var fs [][]byte
			for i := range 250 {
				fs = append(fs, textFrame(publishMsg(fmt.Sprintf("m%d", i), "1")))
			}
			return fs
		}, want: outcome{errCode: "rate_limited", close: 1008, acks: -1, appended: -1}},
		{name: "ack flood", frames: [][]byte{ // 4,500 acks: past the inbound burst of 2,000 plus 2.5 s of refill at 1,000/s
			textFrame(repeatLines(`{"type":"ack","seq":0}`, 1500)),
			textFrame(repeatLines(`{"type":"ack","seq":0}`, 1500)),
			textFrame(repeatLines(`{"type":"ack","seq":0}`, 1500)),
		}, want: outcome{close: 1008}},
		{name: "pong flood in many frames", framesFor: func(msg) [][]byte {
			fs := make([][]byte, 5000)
			for i := range fs {
				fs[i] = textFrame(`{"type":"pong"}`)
			}
			return fs
		}, want: outcome{close: 1008}},
		{name: "WebSocket ping flood", frames: [][]byte{bytes.Repeat(frameSpec{op: opPing, payload: []byte("p")}.encode(), 20000)},
			want: outcome{close: 1008}},
		// A long heartbeat: on a loaded machine the flood must be what closes
		// the connection, not a heartbeat the flooder does not answer.
		{name: "WebSocket empty ping flood in many writes", run: pingFlood, want: outcome{},
			opts: []fanout.Option{fanout.WithHeartbeat(time.Minute, time.Minute)}},
		{name: "unsolicited pong flood", frames: [][]byte{bytes.Repeat(frameSpec{op: opPong}.encode(), 20000)},
			want: outcome{close: 1008}},
		{name: "reader that never reads", run: neverReads, want: outcome{appended: neverReadsEvents, slow: 1}},
	}
}

func floodPublishes(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(publishMsg(fmt.Sprintf("f%d", i), "1"))
		b.WriteByte('\n')
	}
	return b.String()
}

// hostileHarness is one session that every hostile input is thrown at, and
// a bystander connected to it all along.
type hostileHarness struct {
	sv    *server
	addr  string
	epoch string
	by    *client
	last  uint64 // the last seq the bystander received

	mu      sync.Mutex
	reasons map[string]fanout.CloseCode // the server's close reason by client address
}

func newHostileHarness(t *testing.T, extra ...fanout.Option) *hostileHarness {
	h := &hostileHarness{reasons: make(map[string]fanout.CloseCode)}
	opts := []fanout.Option{
		fanout.WithAuthenticate(authByHeader),
		fanout.WithOrigins("trusted.example"),
		fanout.WithHosts("127.0.0.1", "localhost"),
		fanout.WithMaxConnections(hostileMaxConns),
		// The default burst, and a refill slow enough that a flood's refusals
		// come in a row however slowly the machine runs.
		fanout.WithPublishRate(1, 100),
		fanout.WithHeartbeat(hostileHeartbeat, hostileHeartbeatTimeout),
		fanout.WithWriteTimeout(hostileWriteLimit),
		fanout.WithOnLeave(func(c *fanout.Conn) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.reasons[c.RemoteAddr()] = fanout.CloseCodeOf(c.CloseReason())
		}),
	}
	h.sv = newServerWith(t, func(hs *http.Server) {
		hs.ReadHeaderTimeout = hostileHeaderWait
		hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			_ = c.(*net.TCPConn).SetWriteBuffer(hostileSendBuffer)
			return ctx
		}
	}, append(opts, extra...)...)
	h.addr = strings.TrimPrefix(h.sv.hs.URL, "http://")
	h.epoch = h.sv.s.Epoch()
	h.by = dial(t, h.sv.url(""), user("bystander"))
	// The bystander also says it is alive every 100 ms, not only when a
	// ping reaches it: on a loaded machine its reader may be late, and the
	// silence cases need a short heartbeat.
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = h.by.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"pong"}`))
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return h
}

// newServerWith is newServer with the http.Server configured by configure
// before it starts.
func newServerWith(t *testing.T, configure func(*http.Server), opts ...fanout.Option) *server {
	t.Helper()
	s, err := fanout.NewSession("test", opts...)
	require.NoError(t, err)
	hs := httptest.NewUnstartedServer(s)
	configure(hs.Config)
	hs.Start()
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	return &server{t: t, s: s, hs: hs}
}

func (h *hostileHarness) run(t *testing.T, tc hostileCase) {
	before := h.sv.s.Stats()
	var evs []msg
	if tc.run != nil {
		tc.run(t, h)
		evs = h.settle(t, before, tc.want)
	} else {
		evs = h.runInput(t, tc, before)
	}
	if tc.check != nil {
		tc.check(t, evs)
	}
}

// runInput performs a handshake, writes the case's frames and checks what
// follows.
func (h *hostileHarness) runInput(t *testing.T, tc hostileCase, before fanout.Stats) []msg {
	hdr := tc.hdr
	if hdr == nil {
		hdr = user("mallory")
	}
	query := strings.NewReplacer("{EPOCH}", h.epoch, "{HEAD+1}", fmt.Sprint(before.Head+1)).Replace(tc.query)
	res := rawDial(t, h.addr, query, hdr)
	wantStatus := tc.want.status
	if wantStatus == 0 {
		wantStatus = http.StatusSwitchingProtocols
	}
	require.Equal(t, wantStatus, res.status, "body: %s", res.body)
	c := res.conn
	if c == nil {
		return h.settle(t, before, tc.want)
	}
	if tc.want.resumed != nil {
		assert.Equal(t, *tc.want.resumed, c.welcome.Resumed)
	}
	c.silent = tc.silent
	frames := tc.frames
	if tc.framesFor != nil {
		frames = tc.framesFor(c.welcome)
	}
	// One write: a server that closes early must not turn the rest of the
	// input into a write error on this side.
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.nc.Write(bytes.Join(frames, nil))
	local := c.nc.LocalAddr().String()
	switch {
	case tc.hangup:
		require.NoError(t, c.nc.Close())
		assert.Equal(t, fanout.CloseCode(tc.want.reason), h.reasonOf(t, local))
		return h.settle(t, before, tc.want)
	case tc.want.close != 0 || tc.want.drop:
		h.expectClose(t, c, tc.want, tc.mute)
		reason := tc.want.reason
		if reason == 0 {
			reason = tc.want.close
		}
		assert.Equal(t, fanout.CloseCode(reason), h.reasonOf(t, local))
		return h.settle(t, before, tc.want)
	default:
		h.expectAnswers(t, c, tc.want)
		evs := h.settleWith(t, before, tc.want, 2)
		// The hostile connection is still served: it gets the marker too.
		for {
			ev := c.read(5 * time.Second)
			require.NoError(t, ev.err)
			require.False(t, ev.eof || ev.closeCode != 0, "connection closed: %d %s", ev.closeCode, ev.closeMsg)
			if hasEvent(ev.msgs, h.last) {
				break
			}
		}
		c.closeNormally(t)
		assert.Equal(t, fanout.CloseNormal, h.reasonOf(t, local))
		h.waitConns(t, 1)
		return evs
	}
}

func hasEvent(msgs []msg, seq uint64) bool {
	for _, m := range msgs {
		if m.Type == "event" && m.Seq == seq {
			return true
		}
	}
	return false
}

// expectClose reads until the server closes, checking the acks and errors
// that come first and the close code.
func (h *hostileHarness) expectClose(t *testing.T, c *rawConn, want outcome, mute bool) {
	t.Helper()
	var acks int
	var codes []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev := c.read(time.Until(deadline))
		require.NoError(t, ev.err)
		acks, codes = tally(ev.msgs, acks, codes)
		if ev.eof {
			require.True(t, want.drop, "connection dropped without a close frame")
			break
		}
		if ev.closeCode != 0 {
			require.False(t, want.drop, "got close %d, want a dropped connection", ev.closeCode)
			assert.Equal(t, want.close, ev.closeCode, "close reason %q", ev.closeMsg)
			if mute {
				_ = c.nc.Close()
				break
			}
			_, _ = c.nc.Write(closeFrame(uint16(ev.closeCode), ""))
			c.waitEOF(t)
			break
		}
	}
	if want.acks >= 0 {
		assert.Equal(t, want.acks, acks, "acks before the close")
	}
	if want.errCode != "" {
		assert.Contains(t, codes, want.errCode)
	} else {
		assert.Empty(t, codes)
	}
}

// expectAnswers reads until the expected acks and error arrived, on a
// connection that must stay open.
func (h *hostileHarness) expectAnswers(t *testing.T, c *rawConn, want outcome) {
	t.Helper()
	var acks int
	var codes []string
	for acks < want.acks || want.errCode != "" && len(codes) == 0 {
		ev := c.read(5 * time.Second)
		require.NoError(t, ev.err)
		require.False(t, ev.eof || ev.closeCode != 0, "connection closed: %d %s", ev.closeCode, ev.closeMsg)
		acks, codes = tally(ev.msgs, acks, codes)
	}
	assert.Equal(t, want.acks, acks)
}

func tally(msgs []msg, acks int, codes []string) (int, []string) {
	for _, m := range msgs {
		switch m.Type {
		case "ack":
			acks++
		case "error":
			codes = append(codes, m.Code)
		}
	}
	return acks, codes
}

// reasonOf waits for the server to report why the connection from addr
// closed.
func (h *hostileHarness) reasonOf(t *testing.T, addr string) fanout.CloseCode {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		code, ok := h.reasons[addr]
		h.mu.Unlock()
		if ok {
			return code
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "the server did not report the connection closed", "%s", addr)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitConns polls until the session has n connections.
func (h *hostileHarness) waitConns(t *testing.T, n int) {
	t.Helper()
	waitConnections(t, h.sv.s, n)
}

func (h *hostileHarness) settle(t *testing.T, before fanout.Stats, want outcome) []msg {
	return h.settleWith(t, before, want, 1)
}

// settleWith checks that the session is unaffected: once conns connections
// remain, a publish reaches the bystander right after everything the input
// appended, in order, and the figures add up. It returns what the bystander
// received before that publish.
func (h *hostileHarness) settleWith(t *testing.T, before fanout.Stats, want outcome, conns int) []msg {
	t.Helper()
	h.waitConns(t, conns)
	marker := h.sv.publish(fmt.Sprintf(`{"marker":%q}`, t.Name()))
	var evs []msg
	for {
		e := h.by.nextOf(t, "event")
		require.Equal(t, h.last+1, e.Seq, "the bystander got a gap or a reorder")
		h.last = e.Seq
		if e.Seq == marker {
			break
		}
		evs = append(evs, e)
	}
	st := h.sv.s.Stats()
	if want.appended >= 0 {
		assert.Equal(t, uint64(want.appended), marker-before.Head-1, "events the input appended")
	}
	assert.Equal(t, marker, st.Head)
	assert.Equal(t, st.Head, st.Published)
	assert.Equal(t, uint64(1), st.Oldest)
	assert.Equal(t, h.epoch, st.Epoch)
	assert.Equal(t, conns, st.Connections)
	assert.Equal(t, before.SlowConsumerCloses+uint64(want.slow), st.SlowConsumerCloses)
	assert.Equal(t, before.ResumesReplayed, st.ResumesReplayed)
	wantResets := before.ResumesReset
	if want.resumed != nil && !*want.resumed {
		wantResets++
	}
	assert.Equal(t, wantResets, st.ResumesReset)
	assert.GreaterOrEqual(t, st.Delivered, before.Delivered)
	select {
	case <-h.by.done:
		require.FailNow(t, "the bystander was disconnected", "%v", h.by.err)
	default:
	}
	return evs
}

// slowlorisHandshake dribbles a handshake one byte at a time. The defence
// is the host's http.Server ReadHeaderTimeout (README, "Mounting"): the
// server closes the connection long before the request is complete, and
// the session never sees it.
func slowlorisHandshake(t *testing.T, h *hostileHarness) {
	nc, err := net.Dial("tcp", h.addr)
	require.NoError(t, err)
	defer nc.Close()
	req := "GET / HTTP/1.1\r\nHost: " + h.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-User: mallory\r\n" +
		"X-Padding: " + strings.Repeat("z", 200) + "\r\n\r\n"
	start := time.Now()
	closedAfter := time.Duration(0)
	for i := 0; i < len(req); i++ {
		if _, err := nc.Write([]byte{req[i]}); err != nil {
			closedAfter = time.Since(start)
			break
		}
		assert.Equal(t, 1, h.sv.s.Stats().Connections, "the session never sees the request")
		time.Sleep(10 * time.Millisecond)
	}
	if closedAfter == 0 { // the write side may still accept bytes; the read side tells
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, nc)
		require.NoError(t, err, "the server should close the connection")
		closedAfter = time.Since(start)
	}
	assert.Less(t, closedAfter, 10*hostileHeaderWait, "closed %v after the first byte", closedAfter)
	assert.Less(t, closedAfter, time.Duration(len(req))*10*time.Millisecond, "closed before the request was complete")
}

// manyConnsOneIdentity opens connections as one identity until the
// session's connection limit: each is admitted and announced, as for any
// other identity, and the one past the limit gets 503.
func manyConnsOneIdentity(t *testing.T, h *hostileHarness) {
	var conns []*rawConn
	for i := range hostileMaxConns - 1 { // the bystander holds one slot
		res := rawDial(t, h.addr, "", user("sybil"))
		require.Equal(t, http.StatusSwitchingProtocols, res.status, "connection %d", i)
		c := res.conn
		mine := 0
		for _, p := range c.welcome.Presence {
			if p.User == "sybil" {
				mine++
			}
		}
		assert.Equal(t, i+1, mine, "presence lists every connection of the identity")
		assert.Len(t, c.welcome.Presence, i+2)
		j := h.by.nextOf(t, "join")
		assert.Equal(t, "sybil", j.User)
		assert.Equal(t, c.welcome.Conn, j.Conn)
		conns = append(conns, c)
	}
	assert.Equal(t, http.StatusServiceUnavailable, rawDial(t, h.addr, "", user("sybil")).status, "past the connection limit")
	assert.Equal(t, http.StatusServiceUnavailable, rawDial(t, h.addr, "", user("someone-else")).status, "the limit is per session")
	for _, c := range conns {
		c.closeNormally(t)
		for {
			if m := h.by.nextOf(t, "leave"); m.User == "sybil" {
				assert.Equal(t, c.welcome.Conn, m.Conn)
				break
			}
		}
	}
}

// pingFlood sends WebSocket pings as fast as the socket takes them, a
// frame per write, until the server closes the connection with 1008.
func pingFlood(t *testing.T, h *hostileHarness) {
	res := rawDial(t, h.addr, "", user("mallory"))
	require.Equal(t, http.StatusSwitchingProtocols, res.status)
	c := res.conn
	local := c.nc.LocalAddr().String()
	ping := frameSpec{op: opPing}.encode()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.nc.Write(ping); err != nil {
				return
			}
		}
	}()
	code, err := c.closeCodeUntilEOF(10 * time.Second)
	close(stop)
	<-done
	require.NoError(t, err)
	assert.Equal(t, 1008, code)
	assert.Equal(t, fanout.ClosePolicy, h.reasonOf(t, local))
}

// surrogateIDsDoNotCollide publishes with an id, then with ids that a
// lossy decoder would turn into the same string (c U+FFFD): those are
// refused with 4000, so they are neither acked with the first one's seq
// nor dropped as its duplicate.
func surrogateIDsDoNotCollide(t *testing.T, h *hostileHarness) {
	publishAndAck(t, h, "mallory", "c\ufffd")
	for _, id := range []string{`c\ud800`, `c\udc00`} {
		res := rawDial(t, h.addr, "", user("mallory"))
		require.Equal(t, http.StatusSwitchingProtocols, res.status)
		res.conn.write(t, textFrame(`{"type":"publish","id":"`+id+`","data":"other"}`))
		h.expectClose(t, res.conn, outcome{close: 4000}, false)
	}
}

// replayOthersID publishes with an id another identity used: publish ids
// are scoped to the identity, so it is a new event, not a replay of the
// other's.
func replayOthersID(t *testing.T, h *hostileHarness) {
	first := publishAndAck(t, h, "alice", "shared-id")
	second := publishAndAck(t, h, "mallory", "shared-id")
	assert.Equal(t, first+1, second, "a new seq, not alice's")
}

// publishAndAck publishes as who on a connection of its own and returns the
// seq of the ack.
func publishAndAck(t *testing.T, h *hostileHarness, who, id string) uint64 {
	res := rawDial(t, h.addr, "", user(who))
	require.Equal(t, http.StatusSwitchingProtocols, res.status)
	c := res.conn
	c.write(t, textFrame(publishMsg(id, fmt.Sprintf("%q", "by "+who))))
	defer c.closeNormally(t)
	for {
		ev := c.read(5 * time.Second)
		require.NoError(t, ev.err)
		require.False(t, ev.eof || ev.closeCode != 0)
		for _, m := range ev.msgs {
			if m.Type == "ack" {
				return m.Seq
			}
		}
	}
}

// neverReadsEvents of 16 KiB are far more than the socket buffers hold.
const neverReadsEvents = 40

// neverReads connects a client that never reads while large events flow:
// its writes block, it is closed as a slow consumer, and the bystander
// receives every event meanwhile.
func neverReads(t *testing.T, h *hostileHarness) {
	nc, err := net.Dial("tcp", h.addr)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.(*net.TCPConn).SetReadBuffer(4096))
	_, err = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: "+h.addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-User: sloth\r\n\r\n")
	require.NoError(t, err)
	h.waitConns(t, 2)
	// It keeps sending pongs, so that only its reading is at fault.
	_, err = nc.Write(textFrame(`{"type":"pong"}`))
	require.NoError(t, err)
	big := `"` + strings.Repeat("s", 16<<10) + `"`
	for range neverReadsEvents {
		h.sv.publish(big)
	}
	local := nc.LocalAddr().String()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		code, ok := h.reasons[local]
		h.mu.Unlock()
		if ok {
			assert.Equal(t, fanout.CloseSlowConsumer, code)
			return
		}
		_, _ = nc.Write(textFrame(`{"type":"pong"}`))
		time.Sleep(20 * time.Millisecond)
	}
	require.FailNow(t, "the reader that never reads was not closed")
}
