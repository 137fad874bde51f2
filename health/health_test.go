package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/health"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// downLog is a memory log whose Head fails while down is set, as a log
// whose backend cannot be reached would.
type downLog struct {
	fanout.Log
	down atomic.Bool
}

func (l *downLog) Head(ctx context.Context) (string, uint64, error) {
	if l.down.Load() {
		return "", 0, errors.New("connection refused")
	}
	return l.Log.Head(ctx)
}

func newLog(t *testing.T) *downLog {
	t.Helper()
	mem, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	return &downLog{Log: mem}
}

func newSession(t *testing.T, opts ...fanout.Option) *fanout.Session {
	t.Helper()
	s, err := fanout.NewSession("doc", opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type report struct {
	Status      string  `json:"status"`
	Sessions    int     `json:"sessions"`
	Connections int     `json:"connections"`
	Goroutines  int     `json:"goroutines"`
	Uptime      float64 `json:"uptime_seconds"`
	Memory      struct {
		Heap int64 `json:"heap_bytes"`
		RSS  int64 `json:"rss_bytes"`
	} `json:"memory"`
	Log *struct {
		Reachable bool   `json:"reachable"`
		Error     string `json:"error"`
		MaxLag    uint64 `json:"max_lag"`
	} `json:"log"`
}

func ready(t *testing.T, h http.Handler) (int, report) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var r report
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r), w.Body.String())
	return w.Code, r
}

// Readiness is 200 with the figures of every session while they serve,
// 503 once the process drains, and liveness stays 200 throughout.
func TestReadyAndDrain(t *testing.T) {
	a, b := newSession(t), newSession(t)
	hs := httptest.NewServer(a)
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	require.NoError(t, err)
	defer ws.CloseNow()
	require.Eventually(t, func() bool { return a.Stats().Connections == 1 }, 5*time.Second, time.Millisecond)

	h := health.New(a)
	h.Add(b)
	code, r := ready(t, h.Ready())
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ready", r.Status)
	assert.Equal(t, 2, r.Sessions)
	assert.Equal(t, 1, r.Connections)
	assert.Positive(t, r.Goroutines)
	assert.Positive(t, r.Memory.Heap)
	assert.Positive(t, r.Memory.RSS)
	assert.Nil(t, r.Log, "no session is on a shared log")

	h.Drain()
	code, r = ready(t, h.Ready())
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "draining", r.Status)
	assert.Equal(t, 1, r.Connections, "draining closes nothing")

	w := httptest.NewRecorder()
	h.Live().ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "ok\n", w.Body.String())
}

// Once a session's Shutdown has begun, readiness answers 503.
func TestNotReadyOnceShutDown(t *testing.T) {
	s := newSession(t)
	h := health.New(s)
	code, _ := ready(t, h.Ready())
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, s.Shutdown(context.Background()))
	code, r := ready(t, h.Ready())
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "shutting down", r.Status)
}

// A session on a shared log that it has not synced with is not ready; one
// whose log stops answering stays ready, and the report says the log is
// unreachable.
func TestSharedLogState(t *testing.T) {
	l := newLog(t)
	l.down.Store(true)
	s := newSession(t, fanout.WithLog(l))
	h := health.New(s)
	code, r := ready(t, h.Ready())
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "not ready", r.Status)
	require.NotNil(t, r.Log)
	assert.False(t, r.Log.Reachable)
	assert.Contains(t, r.Log.Error, "connection refused")

	l.down.Store(false)
	require.Eventually(t, func() bool { code, _ := ready(t, h.Ready()); return code == http.StatusOK }, 5*time.Second, 10*time.Millisecond)
	_, err := s.Publish(context.Background(), []byte(`{}`))
	require.NoError(t, err)
	_, r = ready(t, h.Ready())
	assert.True(t, r.Log.Reachable)

	l.down.Store(true)
	code, r = ready(t, h.Ready())
	assert.Equal(t, http.StatusOK, code, "an unreachable shared log does not take the node out")
	assert.False(t, r.Log.Reachable)
}

// The tail lag is what the log has committed that the session has not yet
// received: a second session on the same log that is not following it
// (shut down) falls behind.
func TestSharedLogLag(t *testing.T) {
	l := newLog(t)
	a := newSession(t, fanout.WithLog(l))
	require.Eventually(t, func() bool { return a.Health(context.Background()).Ready }, 5*time.Second, time.Millisecond)
	for range 3 {
		_, err := a.Publish(context.Background(), []byte(`{}`))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return a.Stats().Head == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, a.Close()) // stops following the log
	_, err := l.Append(context.Background(), "", "", []byte(`{}`))
	require.NoError(t, err)
	_, err = l.Append(context.Background(), "", "", []byte(`{}`))
	require.NoError(t, err)
	hl := a.Health(context.Background()).Log
	require.NotNil(t, hl)
	assert.Equal(t, uint64(5), hl.Head)
	assert.Equal(t, uint64(3), hl.Window)
	assert.Equal(t, uint64(2), hl.Lag)
	_, r := ready(t, health.New(a).Ready())
	assert.Equal(t, uint64(2), r.Log.MaxLag)
}
