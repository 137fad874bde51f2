package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		name    string
		frame   string
		types   []string
		wantErr bool
	}{
		{name: "one", frame: `{"type":"ping"}`, types: []string{"ping"}},
		{name: "batch", frame: "{\"type\":\"welcome\",\"epoch\":\"e\",\"head\":3}\n{\"type\":\"event\",\"seq\":4,\"data\":{}}\n", types: []string{"welcome", "event"}},
		{name: "empty lines", frame: "\n\n{\"type\":\"ping\"}\n\n \n{\"type\":\"ping\"}", types: []string{"ping", "ping"}},
		{name: "unknown type kept", frame: `{"type":"future","x":1}`, types: []string{"future"}},
		{name: "unknown fields ignored", frame: `{"type":"event","seq":1,"data":null,"extra":[1,2]}`, types: []string{"event"}},
		{name: "empty", frame: "", types: []string{}},
		{name: "malformed", frame: `{"type":`, wantErr: true},
		{name: "no type", frame: `{"seq":1}`, wantErr: true},
		{name: "event without seq", frame: `{"type":"event","data":1}`, wantErr: true},
		{name: "event without data", frame: `{"type":"event","seq":1}`, wantErr: true},
		{name: "negative seq", frame: `{"type":"event","seq":-1,"data":1}`, wantErr: true},
		{name: "welcome without epoch", frame: `{"type":"welcome","head":1}`, wantErr: true},
		{name: "ack without id", frame: `{"type":"ack","seq":1}`, wantErr: true},
		{name: "error without code", frame: `{"type":"error","id":"x"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := decodeFrame([]byte(tt.frame))
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			types := []string{}
			for _, m := range msgs {
				types = append(types, m.Type)
			}
			assert.Equal(t, tt.types, types)
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	msgs, err := decodeFrame([]byte(`{"type":"event","seq":7,"data":{"a":"b\nc"},"from":"alice","id":"x1"}`))
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Equal(t, uint64(7), msgs[0].Seq)
	assert.JSONEq(t, `{"a":"b\nc"}`, string(msgs[0].Data))
	assert.Equal(t, "alice", msgs[0].From)
	assert.Equal(t, "x1", msgs[0].ID)
}

func TestEncodePublish(t *testing.T) {
	msg, err := encodePublish("abc", []byte("{\n  \"k\": [1,\n 2]\n}\n"))
	require.NoError(t, err)
	assert.Equal(t, `{"type":"publish","id":"abc","data":{"k":[1,2]}}`, string(msg))
	assert.True(t, json.Valid(msg))

	for _, bad := range []string{"", "{", "nope", `{"a":1}{"b":2}`} {
		_, err := encodePublish("abc", []byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestAppendAck(t *testing.T) {
	assert.Equal(t, `{"type":"ack","seq":18446744073709551615}`, string(appendAck(nil, 1<<64-1)))
}

func TestNewID(t *testing.T) {
	a, b := newID(), newID()
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
}

func TestConnURL(t *testing.T) {
	tests := []struct {
		name  string
		url   string
		opts  []Option
		first string
		then  string // after position 42 of epoch "e/1"
	}{
		{
			name:  "plain",
			url:   "ws://h/ws",
			first: "ws://h/ws",
			then:  "ws://h/ws?after=42&epoch=e%2F1",
		},
		{
			name:  "keeps query",
			url:   "ws://h/ws?token=a+b&x=1",
			first: "ws://h/ws?token=a+b&x=1",
			then:  "ws://h/ws?token=a+b&x=1&after=42&epoch=e%2F1",
		},
		{
			name:  "start after",
			url:   "ws://h/ws?token=t",
			opts:  []Option{WithStartAfter(5, "")},
			first: "ws://h/ws?token=t&after=5",
			then:  "ws://h/ws?token=t&after=42&epoch=e%2F1",
		},
		{
			name:  "start in URL",
			url:   "ws://h/ws?after=9&epoch=old&token=t",
			first: "ws://h/ws?token=t&after=9&epoch=old",
			then:  "ws://h/ws?token=t&after=42&epoch=e%2F1",
		},
		{
			name:  "option wins over URL",
			url:   "ws://h/ws?after=9&epoch=old",
			opts:  []Option{WithStartAfter(0, "")},
			first: "ws://h/ws?after=0",
			then:  "ws://h/ws?after=42&epoch=e%2F1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			for _, o := range tt.opts {
				o(&cfg)
			}
			u, err := url.Parse(tt.url)
			require.NoError(t, err)
			require.NoError(t, takeStart(&cfg, u))
			c := &Client{bases: []*url.URL{u}, rseq: cfg.startSeq, repoch: cfg.startEpoch, known: cfg.startSet}
			assert.Equal(t, tt.first, c.connURL())
			c.rseq, c.repoch, c.known = 42, "e/1", true
			assert.Equal(t, tt.then, c.connURL())
		})
	}
}

func TestTakeStartErrors(t *testing.T) {
	for _, raw := range []string{"ws://h/?epoch=e", "ws://h/?after=-1", "ws://h/?after=x&epoch=e"} {
		cfg := defaultConfig()
		u, err := url.Parse(raw)
		require.NoError(t, err)
		assert.Error(t, takeStart(&cfg, u), raw)
	}
}

func TestTerminal(t *testing.T) {
	closeErr := func(code websocket.StatusCode) error {
		return errors.Join(errors.New("read"), websocket.CloseError{Code: code})
	}
	tests := []struct {
		err  error
		want bool
	}{
		{closeErr(websocket.StatusNormalClosure), true},
		{closeErr(websocket.StatusPolicyViolation), true},
		{closeErr(websocket.StatusMessageTooBig), true},
		{closeErr(4000), true},
		{closeErr(websocket.StatusGoingAway), false},
		{closeErr(4001), false},
		{closeErr(4002), false},
		{closeErr(websocket.StatusInternalError), false},
		{errors.New("connection reset"), false},
		{errGap, false},
		{errSilent, false},
		{&HandshakeError{StatusCode: http.StatusUnauthorized}, true},
		{&HandshakeError{StatusCode: http.StatusForbidden}, true},
		{&HandshakeError{StatusCode: http.StatusBadRequest}, true},
		{&HandshakeError{StatusCode: http.StatusTooManyRequests}, false},
		{&HandshakeError{StatusCode: http.StatusServiceUnavailable}, false},
		{&HandshakeError{StatusCode: http.StatusBadGateway}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, terminal(tt.err), "%v", tt.err)
	}
}

func TestOptionValidation(t *testing.T) {
	bad := [][]Option{
		{WithBackoff(0, time.Second)},
		{WithBackoff(time.Second, time.Millisecond)},
		{WithTimeout(0)},
		{WithAckInterval(-1)},
		{WithReadLimit(0)},
		{WithMaxMessageSize(0)},
		{WithBuffer(0)},
		{WithMaxInFlight(0)},
		{WithStartAfter(1, string(make([]byte, 65)))},
	}
	for i, opts := range bad {
		_, err := Dial(t.Context(), "ws://127.0.0.1:1/", opts...)
		assert.ErrorIs(t, err, ErrInvalidOption, "case %d", i)
	}
	_, err := Dial(t.Context(), "ftp://h/")
	assert.Error(t, err)
}
