package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// served is a session with metrics, mounted on a loopback server next to
// its /metrics.
type served struct {
	s   *fanout.Session
	reg *prometheus.Registry
	hs  *httptest.Server
}

func serve(t *testing.T, name string, reg *prometheus.Registry, m *metrics.Metrics, opts ...fanout.Option) *served {
	t.Helper()
	s, err := fanout.NewSession(name, append(opts, fanout.WithObserver(m))...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", s)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	return &served{s: s, reg: reg, hs: hs}
}

func (sv *served) dial(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(sv.hs.URL, "http")+"/ws", opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (sv *served) scrape(t *testing.T) []byte {
	t.Helper()
	resp, err := http.Get(sv.hs.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

func receive(t *testing.T, c *client.Client, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.Events():
		case <-time.After(5 * time.Second):
			require.FailNow(t, "no event")
		}
	}
}

// The metrics follow what real clients do, agree with the session's Stats,
// and the exposition passes Prometheus's lint.
func TestMetricsFollowSessions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	sv := serve(t, "doc", reg, m)
	a, b := sv.dial(t), sv.dial(t)
	ctx := context.Background()
	for i := range 10 {
		_, err := sv.s.Publish(ctx, fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}
	_, err = a.Publish(ctx, []byte(`{"from":"a"}`))
	require.NoError(t, err)
	receive(t, a, 11)
	receive(t, b, 11)

	_ = sv.scrape(t)
	count := func(name string, labels ...string) float64 {
		t.Helper()
		return value(t, sv.reg, name, labels...)
	}
	assert.Equal(t, 2.0, count("fanout_connections"))
	assert.Equal(t, 1.0, count("fanout_sessions"))
	assert.Equal(t, 10.0, count("fanout_events_published_total", "origin", "server"))
	assert.Equal(t, 1.0, count("fanout_events_published_total", "origin", "client"))
	require.Eventually(t, func() bool { return count("fanout_deliveries_total") == float64(sv.s.Stats().Delivered) },
		5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 22.0, count("fanout_deliveries_total"))
	assert.Positive(t, count("fanout_write_rounds_total"))
	assert.Positive(t, count("fanout_written_bytes_total"))
	assert.Positive(t, count("fanout_publish_to_write_seconds_count"))

	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return count("fanout_connections") == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1.0, count("fanout_connections_closed_total", "code", "1000"))

	problems, err := promlint.New(bytes.NewReader(sv.scrape(t))).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, sv.s.Shutdown(sctx))
	assert.Equal(t, 0.0, count("fanout_sessions"))
	assert.Equal(t, 0.0, count("fanout_connections"))
	assert.Equal(t, 1.0, count("fanout_connections_closed_total", "code", "1001"))
	promtool(t, sv.scrape(t))
}

// WithSessionLabel splits the per-session metrics by the label it maps
// each session to; sessions mapped to the same value count together.
func TestMetricsSessionLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.WithSessionLabel(func(name string) string {
		if name == "lobby" {
			return name
		}
		return ""
	}))
	require.NoError(t, err)
	lobby := serve(t, "lobby", reg, m)
	doc1, doc2 := serve(t, "doc-1", reg, m), serve(t, "doc-2", reg, m)
	lobby.dial(t)
	doc1.dial(t)
	doc2.dial(t)
	for _, sv := range []*served{lobby, doc1, doc2} {
		_, err := sv.s.Publish(context.Background(), []byte(`{}`))
		require.NoError(t, err)
	}
	assert.Equal(t, 1.0, value(t, reg, "fanout_connections", "session", "lobby"))
	assert.Equal(t, 2.0, value(t, reg, "fanout_connections", "session", ""))
	assert.Equal(t, 1.0, value(t, reg, "fanout_events_published_total", "session", "lobby", "origin", "server"))
	assert.Equal(t, 2.0, value(t, reg, "fanout_events_published_total", "session", "", "origin", "server"))
	assert.Equal(t, 3.0, value(t, reg, "fanout_sessions"), "not split by session")
	promtool(t, lobby.scrape(t))
}

// Events reported by hubs and shared-log backends, which this module only
// counts, and close codes outside the protocol, which count as other.
func TestMetricsHubAndLogEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	m.HubSessionCreated("a")
	m.HubSessionCreated("b")
	m.HubSessionEvicted("a")
	m.LogError("a", "append", fmt.Errorf("refused"))
	m.LogGapRepaired("a")
	m.LogProbeRestarted("a")
	m.ConnOpened("a")
	m.ConnClosed("a", 4321)
	m.Refused("a", "rate_limited")
	assert.Equal(t, 2.0, value(t, reg, "fanout_hub_sessions_created_total"))
	assert.Equal(t, 1.0, value(t, reg, "fanout_hub_sessions_evicted_total"))
	assert.Equal(t, 1.0, value(t, reg, "fanout_log_errors_total", "op", "append"))
	assert.Equal(t, 0.0, value(t, reg, "fanout_log_errors_total", "op", "follow"))
	assert.Equal(t, 1.0, value(t, reg, "fanout_log_gaps_repaired_total"))
	assert.Equal(t, 1.0, value(t, reg, "fanout_log_probe_restarts_total"))
	assert.Equal(t, 1.0, value(t, reg, "fanout_connections_closed_total", "code", "other"))
	assert.Equal(t, 1.0, value(t, reg, "fanout_publish_refusals_total", "reason", "rate_limited"))
	assert.Equal(t, 0.0, value(t, reg, "fanout_publish_refusals_total", "reason", "forbidden"))
}

// value is the value of the series of family name with the given label
// pairs (all of its labels), read from reg; a histogram's _count and _sum
// are read from the histogram.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	base, part := name, ""
	for _, suffix := range []string{"_count", "_sum"} {
		if strings.HasSuffix(name, suffix) {
			base, part = strings.TrimSuffix(name, suffix), suffix
		}
	}
	for _, f := range fams {
		if f.GetName() != name && f.GetName() != base {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(want) {
				continue
			}
			for _, l := range s.GetLabel() {
				if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
					continue series
				}
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue()
			case s.Gauge != nil:
				return s.Gauge.GetValue()
			case s.Histogram != nil && part == "_count":
				return float64(s.Histogram.GetSampleCount())
			case s.Histogram != nil && part == "_sum":
				return s.Histogram.GetSampleSum()
			}
		}
	}
	require.FailNow(t, "no such series", "%s %v", name, labels)
	return 0
}

// promtool runs Prometheus's own `promtool check metrics` on an
// exposition. Without promtool the test is skipped (after its other
// checks), except with CI set, where scripts/prometheus.sh has installed
// it and a missing one fails.
func promtool(t *testing.T, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			require.FailNow(t, "promtool not found; scripts/prometheus.sh installs it")
		}
		t.Skip("promtool not found; scripts/prometheus.sh installs it")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}
