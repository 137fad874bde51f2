package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

func TestHandshakeRefusals(t *testing.T) {
	sv := newServer(t, fanout.WithAuthenticate(authByHeader), fanout.WithOrigins("trusted.example"))
	tests := []struct {
		name  string
		query string
		hdr   http.Header
		want  int
	}{
		{"authenticated", "", user("a"), http.StatusSwitchingProtocols},
		{"unauthenticated", "", nil, http.StatusUnauthorized},
		{"foreign origin", "", http.Header{"X-User": {"a"}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"allowed origin", "", http.Header{"X-User": {"a"}, "Origin": {"https://trusted.example"}}, http.StatusSwitchingProtocols},
		{"negative after", "after=-1", user("a"), http.StatusBadRequest},
		{"non-numeric after", "after=abc", user("a"), http.StatusBadRequest},
		{"overflowing after", "after=18446744073709551616", user("a"), http.StatusBadRequest},
		{"plus-signed after", "after=+1", user("a"), http.StatusBadRequest},
		{"empty after", "after=", user("a"), http.StatusBadRequest},
		{"repeated after", "after=1&after=2", user("a"), http.StatusBadRequest},
		{"epoch without after", "epoch=abc", user("a"), http.StatusBadRequest},
		{"oversized epoch", "after=1&epoch=" + strings.Repeat("e", 65), user("a"), http.StatusBadRequest},
		{"max after", "after=18446744073709551615", user("a"), http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, dialStatus(t, sv.url(tt.query), tt.hdr))
		})
	}
}

// Same-origin pages are allowed by default, foreign ones are not (CSWSH).
func TestDefaultSameOrigin(t *testing.T) {
	sv := newServer(t)
	host := strings.TrimPrefix(sv.hs.URL, "http://")
	assert.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, sv.url(""), http.Header{"Origin": {"http://" + host}}))
	assert.Equal(t, http.StatusForbidden, dialStatus(t, sv.url(""), http.Header{"Origin": {"http://attacker.example"}}))
}

// At the connection limit, 503 before the upgrade; a freed slot is reusable.
func TestConnectionLimit(t *testing.T) {
	sv := newServer(t, fanout.WithMaxConnections(2))
	a := dial(t, sv.url(""), nil)
	dial(t, sv.url(""), nil)
	assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, sv.url(""), nil))
	require.NoError(t, a.ws.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool {
		return dialStatus(t, sv.url(""), nil) == http.StatusSwitchingProtocols
	}, 5*time.Second, 10*time.Millisecond)
}

func TestMessageTooBig(t *testing.T) {
	sv := newServer(t, fanout.WithMaxMessageSize(1024))
	other := dial(t, sv.url(""), nil)
	c := dial(t, sv.url(""), nil)
	c.send(t, `{"type":"publish","id":"1","data":"`+strings.Repeat("x", 2000)+`"}`)
	assert.Equal(t, websocket.StatusMessageTooBig, c.closed(t))
	sv.publish(`"still fine"`)
	assert.Equal(t, `"still fine"`, string(other.nextOf(t, "event").Data))
}

// Protocol violations close the offending connection with 4000; the
// session and other connections carry on.
func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name  string
		frame string
	}{
		{"malformed json", `{"type":`},
		{"not an object", `[1,2]`},
		{"missing type", `{"id":"1","data":1}`},
		{"unknown type", `{"type":"subscribe"}`},
		{"type not a string", `{"type":1}`},
		{"publish without id", `{"type":"publish","data":1}`},
		{"publish with empty id", `{"type":"publish","id":"","data":1}`},
		{"publish id too long", `{"type":"publish","id":"` + strings.Repeat("i", 65) + `","data":1}`},
		{"publish id not a string", `{"type":"publish","id":7,"data":1}`},
		{"publish without data", `{"type":"publish","id":"1"}`},
		{"ack without seq", `{"type":"ack"}`},
		{"ack negative", `{"type":"ack","seq":-1}`},
		{"ack fractional", `{"type":"ack","seq":1.5}`},
		{"ack beyond sent", `{"type":"ack","seq":99}`},
		{"bad line after good", "{\"type\":\"pong\"}\n{oops"},
	}
	sv := newServer(t)
	other := dial(t, sv.url(""), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, sv.url(""), nil)
			c.send(t, tt.frame)
			assert.Equal(t, websocket.StatusCode(4000), c.closed(t))
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		c := dial(t, sv.url(""), nil)
		require.NoError(t, c.ws.Write(context.Background(), websocket.MessageBinary, []byte(`{"type":"pong"}`)))
		assert.Equal(t, websocket.StatusCode(4000), c.closed(t))
	})
	seq := sv.publish(`"after the storm"`)
	e := other.nextOf(t, "event")
	assert.Equal(t, seq, e.Seq)
	assert.Equal(t, uint64(1), seq, "no malformed publish was appended")
}

// A client that stays silent after a ping is closed with 4002; one that
// answers stays.
func TestHeartbeatTimeout(t *testing.T) {
	sv := newServer(t, fanout.WithHeartbeat(50*time.Millisecond, 500*time.Millisecond))
	alive := dial(t, sv.url(""), nil)
	silent := dialRaw(t, sv.url(""), nil, true)
	assert.Equal(t, "welcome", silent.next(t).Type)
	assert.Equal(t, int64(50), alive.welcome.Heartbeat)
	assert.Equal(t, websocket.StatusCode(4002), silent.closed(t))
	for range 3 { // the live one keeps being pinged and answering
		alive.nextPing(t)
	}
	select {
	case <-alive.done:
		t.Fatalf("answering client was closed: %v", alive.err)
	default:
	}
	var reasons []fanout.CloseCode
	require.Eventually(t, func() bool { return sv.s.Stats().Connections == 1 }, 5*time.Second, 10*time.Millisecond)
	for _, c := range sv.s.Conns() {
		reasons = append(reasons, fanout.CloseCodeOf(c.CloseReason()))
	}
	assert.Equal(t, []fanout.CloseCode{0}, reasons, "the live connection has no close reason")
}

func TestNewSessionRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  fanout.Option
	}{
		{"history", fanout.WithHistory(0)},
		{"heartbeat", fanout.WithHeartbeat(0, time.Second)},
		{"write timeout", fanout.WithWriteTimeout(-1)},
		{"max conns", fanout.WithMaxConnections(0)},
		{"message size", fanout.WithMaxMessageSize(10)},
		{"rate", fanout.WithPublishRate(0, 1)},
		{"dedup", fanout.WithDedupWindow(0)},
		{"logger", fanout.WithLogger(nil)},
		{"nil option", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := fanout.NewSession("x", tt.opt)
			require.ErrorIs(t, err, fanout.ErrInvalidOption)
			assert.Nil(t, s)
		})
	}
}

// The authentication hook picks the refusal's status through its error:
// 403 for ErrForbidden, a StatusError's 4xx code, and 401 for anything else.
func TestAuthenticateStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"plain error", errors.New("no token"), http.StatusUnauthorized},
		{"forbidden", fanout.ErrForbidden, http.StatusForbidden},
		{"wrapped forbidden", fmt.Errorf("user 7 may not open doc 42: %w", fanout.ErrForbidden), http.StatusForbidden},
		{"too many requests", &fanout.StatusError{Code: http.StatusTooManyRequests}, http.StatusTooManyRequests},
		{"not found", &fanout.StatusError{Code: http.StatusNotFound, Err: errors.New("no doc 42")}, http.StatusNotFound},
		{"wrapped status", fmt.Errorf("quota: %w", &fanout.StatusError{Code: http.StatusTooManyRequests}), http.StatusTooManyRequests},
		{"status wins over forbidden", &fanout.StatusError{Code: http.StatusNotFound, Err: fanout.ErrForbidden}, http.StatusNotFound},
		{"5xx is not a refusal", &fanout.StatusError{Code: http.StatusServiceUnavailable}, http.StatusUnauthorized},
		{"2xx is not a refusal", &fanout.StatusError{Code: http.StatusOK}, http.StatusUnauthorized},
		{"switching protocols is not a refusal", &fanout.StatusError{Code: http.StatusSwitchingProtocols}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sv := newServer(t, fanout.WithAuthenticate(func(*http.Request) (fanout.Identity, error) {
				return fanout.Identity{}, tt.err
			}))
			resp, err := http.Get(sv.hs.URL) // the hook runs before the upgrade
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, tt.want, resp.StatusCode)
			assert.Equal(t, strings.ToLower(http.StatusText(tt.want))+"\n", string(body), "the status text, never the hook's error")
			assert.Equal(t, tt.want, dialStatus(t, sv.url(""), nil))
			assert.Equal(t, 0, sv.s.Stats().Connections)
		})
	}
}
