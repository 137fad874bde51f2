package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
)

// counter is an Observer that counts what it is told, by event and detail.
type counter struct {
	mu      sync.Mutex
	counts  map[string]int
	events  int // events in frames written
	bytes   int
	latency []time.Duration // of frames with events
	stops   int
}

var _ fanout.Observer = (*counter)(nil)

func newCounter() *counter { return &counter{counts: make(map[string]int)} }

func (t *counter) add(key string) {
	t.mu.Lock()
	t.counts[key]++
	t.mu.Unlock()
}

func (t *counter) get(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[key]
}

func (t *counter) delivered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events
}

func (t *counter) SessionStarted(s string)                 { t.add("started " + s) }
func (t *counter) SessionStopped(s string)                 { t.add("stopped " + s) }
func (t *counter) ConnOpened(string)                       { t.add("open") }
func (t *counter) ConnClosed(_ string, c fanout.CloseCode) { t.add(fmt.Sprint("closed ", int(c))) }
func (t *counter) Published(_ string, o fanout.Origin)     { t.add("published " + o.String()) }
func (t *counter) Refused(_, code string)                  { t.add("refused " + code) }
func (t *counter) Deduplicated(string)                     { t.add("deduplicated") }
func (t *counter) Resumed(_ string, replayed bool)         { t.add(fmt.Sprint("resumed ", replayed)) }
func (t *counter) WriteRound(string)                       { t.add("round") }
func (t *counter) SlowConsumer(string)                     { t.add("slow") }
func (t *counter) HeartbeatTimeout(string)                 { t.add("heartbeat timeout") }
func (t *counter) HubSessionCreated(string)                { t.add("hub created") }
func (t *counter) HubSessionEvicted(string)                { t.add("hub evicted") }
func (t *counter) LogError(_, op string, _ error)          { t.add("log error " + op) }
func (t *counter) LogGapRepaired(string)                   { t.add("gap") }
func (t *counter) LogProbeRestarted(string)                { t.add("probe") }

func (t *counter) Wrote(_ string, events, bytes int, latency time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events += events
	t.bytes += bytes
	if events > 0 {
		t.latency = append(t.latency, latency)
	}
}

// The observer is told of every connection, publish, refusal, retry,
// resume, round and frame, and its figures agree with Stats.
func TestObserverCounts(t *testing.T) {
	obs := newCounter()
	validate := func(_ context.Context, _ *fanout.Conn, data json.RawMessage) (json.RawMessage, error) {
		if strings.Contains(string(data), "secret") {
			return nil, fmt.Errorf("no: %w", fanout.ErrForbidden)
		}
		if strings.Contains(string(data), "bad") {
			return nil, fmt.Errorf("bad note")
		}
		if strings.Contains(string(data), "big") {
			return json.RawMessage(`"` + strings.Repeat("x", 300) + `"`), nil
		}
		return data, nil
	}
	sv := newServer(t, fanout.WithObserver(obs), fanout.WithValidate(validate),
		fanout.WithPublishRate(0.001, 6), fanout.WithMaxMessageSize(256))
	require.Equal(t, 1, obs.get("started test"))

	a := dial(t, sv.url(""), nil)
	for i := range 3 {
		sv.publish(fmt.Sprintf(`{"n":%d}`, i))
	}
	a.events(t, 3)
	a.send(t, `{"type":"publish","id":"x","data":{"n":3}}`)
	a.nextOf(t, "ack")
	a.send(t, `{"type":"publish","id":"x","data":{"n":3}}`) // a retry
	a.nextOf(t, "ack")
	a.send(t, `{"type":"publish","id":"s","data":"secret"}`)
	a.send(t, `{"type":"publish","id":"b","data":"bad"}`)
	a.send(t, `{"type":"publish","id":"l","data":"big"}`)
	for _, code := range []string{"forbidden", "invalid", "too_large"} {
		require.Equal(t, code, a.nextOf(t, "error").Code)
	}
	for i := range 3 { // the burst of 6 is spent: 1 ack, 3 refusals, 2 more
		a.send(t, fmt.Sprintf(`{"type":"publish","id":"r%d","data":{}}`, i))
	}
	a.nextOf(t, "ack")
	a.nextOf(t, "ack")
	require.Equal(t, "rate_limited", a.nextOf(t, "error").Code)

	b := dial(t, sv.url("after=1&epoch="+a.welcome.Epoch), nil)
	require.True(t, b.welcome.Resumed)
	c := dial(t, sv.url("after=1&epoch=another"), nil)
	require.False(t, c.welcome.Resumed)
	b.events(t, 5)

	st := sv.s.Stats()
	assert.Equal(t, 3, obs.get("published server"))
	assert.Equal(t, 3, obs.get("published client"))
	assert.Equal(t, int(st.Published), obs.get("published server")+obs.get("published client"))
	assert.Equal(t, 1, obs.get("deduplicated"))
	assert.Equal(t, int(st.Deduplicated), obs.get("deduplicated"))
	for _, code := range []string{"forbidden", "invalid", "too_large", "rate_limited"} {
		assert.Equal(t, 1, obs.get("refused "+code), code)
	}
	assert.Equal(t, 1, obs.get("resumed true"))
	assert.Equal(t, 1, obs.get("resumed false"))
	assert.Equal(t, 3, obs.get("open"))
	assert.Positive(t, obs.get("round"))
	require.Eventually(t, func() bool { return obs.delivered() == int(sv.s.Stats().Delivered) }, 5*time.Second, time.Millisecond)
	obs.mu.Lock()
	assert.Greater(t, obs.bytes, obs.events*len(`{"type":"event","seq":1,"data":{}}`))
	for _, l := range obs.latency {
		assert.Less(t, l, 5*time.Second)
	}
	assert.NotEmpty(t, obs.latency)
	obs.mu.Unlock()

	require.NoError(t, a.ws.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return obs.get("closed 1000") == 1 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, sv.s.Shutdown(ctx))
	require.NoError(t, sv.s.Shutdown(ctx))
	assert.Equal(t, 2, obs.get("closed 1001"))
	assert.Equal(t, 1, obs.get("stopped test"), "once, however often Shutdown is called")
}

// The latency reported for a frame is how long its oldest event waited:
// with a batch window, events published just after a round wait for the
// next one.
func TestObserverLatency(t *testing.T) {
	obs := newCounter()
	const window = time.Second
	sv := newServer(t, fanout.WithObserver(obs), fanout.WithBatchWindow(window), fanout.WithPresence(false))
	c := dial(t, sv.url(""), nil)
	sv.publish(`1`) // goes out at once, and starts a window
	c.events(t, 1)
	sv.publish(`2`) // waits for the next round
	c.events(t, 1)
	require.Eventually(t, func() bool { return obs.delivered() == 2 }, 5*time.Second, time.Millisecond)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Len(t, obs.latency, 2)
	assert.Less(t, obs.latency[0], window/2)
	assert.GreaterOrEqual(t, obs.latency[1], window/2)
}

// A replay to a resuming client is not a latency: its events waited for
// the client to come back. The events after it are.
func TestObserverReplayHasNoLatency(t *testing.T) {
	obs := newCounter()
	sv := newServer(t, fanout.WithObserver(obs), fanout.WithPresence(false))
	for i := range 5 {
		sv.publish(fmt.Sprint(i))
	}
	c := dial(t, sv.url("after=0&epoch="+sv.s.Epoch()), nil)
	require.True(t, c.welcome.Resumed)
	c.events(t, 5)
	require.Eventually(t, func() bool { return obs.delivered() == 5 }, 5*time.Second, time.Millisecond)
	obs.mu.Lock()
	require.NotEmpty(t, obs.latency)
	for _, l := range obs.latency {
		assert.Equal(t, time.Duration(-1), l)
	}
	obs.latency = nil
	obs.mu.Unlock()

	sv.publish(`5`)
	c.events(t, 1)
	require.Eventually(t, func() bool { return obs.delivered() == 6 }, 5*time.Second, time.Millisecond)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Len(t, obs.latency, 1)
	assert.GreaterOrEqual(t, obs.latency[0], time.Duration(0))
}

// Slow consumers and heartbeat timeouts are reported as they are
// decided, and with the code the connection closed with.
func TestObserverSlowConsumerAndHeartbeat(t *testing.T) {
	obs := newCounter()
	sv := newServer(t, fanout.WithObserver(obs), fanout.WithHistory(64), fanout.WithWriteTimeout(200*time.Millisecond))
	good := dial(t, sv.url(""), nil)
	stalled, _, err := websocket.Dial(context.Background(), sv.url(""), nil)
	require.NoError(t, err)
	defer stalled.CloseNow()
	big := `"` + strings.Repeat("x", 16<<10) + `"`
	for i := 1; i <= 400; i++ {
		sv.publish(big)
		require.Equal(t, uint64(i), good.nextOf(t, "event").Seq)
	}
	require.Eventually(t, func() bool { return obs.get("closed 4001") == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, obs.get("slow"))
	assert.Equal(t, int(sv.s.Stats().SlowConsumerCloses), obs.get("slow"))

	hb := newServer(t, fanout.WithObserver(obs), fanout.WithHeartbeat(50*time.Millisecond, 50*time.Millisecond))
	silent := dialRaw(t, hb.url(""), nil, true)
	assert.Equal(t, websocket.StatusCode(fanout.CloseHeartbeatTimeout), silent.closed(t))
	require.Eventually(t, func() bool { return obs.get("closed 4002") == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, obs.get("heartbeat timeout"))
}

// A session on a shared log reports the log's failures, and its Health
// shows whether the log answers and how far behind its tail the session
// is.
func TestObserverSharedLog(t *testing.T) {
	mem, err := fanout.NewMemoryLog(100, 100)
	require.NoError(t, err)
	l := &flakyLog{Log: mem}
	obs := newCounter()
	sv := newNode(t, l, fanout.WithObserver(obs))
	sv.publish(`{}`)
	l.down.Store(true)
	_, err = sv.s.Publish(context.Background(), []byte(`{}`))
	require.ErrorIs(t, err, fanout.ErrUnavailable)
	assert.Equal(t, 1, obs.get("log error append"))
	assert.Equal(t, 1, obs.get("published server"))

	h := sv.s.Health(context.Background())
	assert.True(t, h.Ready)
	require.NotNil(t, h.Log)
	assert.True(t, h.Log.Reachable)
	assert.Equal(t, uint64(1), h.Log.Head)
	require.Eventually(t, func() bool { return sv.s.Stats().Head == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, uint64(0), sv.s.Health(context.Background()).Log.Lag)
}

// Health without a shared log: ready until Shutdown begins.
func TestHealth(t *testing.T) {
	sv := newServer(t)
	dial(t, sv.url(""), nil)
	h := sv.s.Health(context.Background())
	assert.Equal(t, fanout.Health{Ready: true, Sessions: 1, Connections: 1}, h)
	require.NoError(t, sv.s.Close())
	h = sv.s.Health(context.Background())
	assert.False(t, h.Ready)
	assert.True(t, h.ShuttingDown)
}
