package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout/client"
)

// get fetches path from the example and returns its status and body.
func (ts *testServer) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + ts.addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// readiness is the part of /readyz's report the tests look at.
type readiness struct {
	Status      string `json:"status"`
	Sessions    int    `json:"sessions"`
	Connections int    `json:"connections"`
	Goroutines  int    `json:"goroutines"`
	Memory      struct {
		Heap int64 `json:"heap_bytes"`
		RSS  int64 `json:"rss_bytes"`
	} `json:"memory"`
	Uptime float64 `json:"uptime_seconds"`
}

func (ts *testServer) readyz(t *testing.T) (int, readiness) {
	t.Helper()
	code, body := ts.get(t, "/readyz")
	var r readiness
	require.NoError(t, json.Unmarshal(body, &r), "%s", body)
	return code, r
}

// The example serves liveness, readiness with its figures, and metrics
// that pass promtool's lint.
func TestOperatorEndpoints(t *testing.T) {
	ts := startServer(t, nil)
	code, body := ts.get(t, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", string(body))

	dial(t, ts.wsURL("?user=a"))
	code, r := ts.readyz(t)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ready", r.Status)
	assert.Equal(t, 1, r.Sessions)
	assert.Equal(t, 1, r.Connections)
	assert.Positive(t, r.Goroutines)
	assert.Positive(t, r.Memory.Heap)
	assert.Positive(t, r.Memory.RSS)
	assert.Positive(t, r.Uptime)

	code, body = ts.get(t, "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), "\nfanout_connections 1\n")
	assert.Contains(t, string(body), "\ngo_goroutines ")
	assert.Contains(t, string(body), "\nprocess_resident_memory_bytes ")
	promtool(t, "check", "metrics").stdin(body).run()
}

// On shutdown, readiness answers 503 for the drain time while clients are
// still served; only then are they closed with 1001. Liveness stays 200.
func TestDrainBeforeGoingAway(t *testing.T) {
	ts := startServer(t, nil)
	ts.app.drain = time.Second
	c, _ := dial(t, ts.wsURL("?user=a"))
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				closed <- err
				return
			}
		}
	}()
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()

	require.Eventually(t, func() bool {
		code, r := ts.readyz(t)
		return code == http.StatusServiceUnavailable && r.Status == "draining"
	}, 5*time.Second, 10*time.Millisecond)
	select {
	case err := <-closed:
		require.FailNow(t, "closed before readiness turned 503 had time to be seen", "%v", err)
	default:
	}
	code, _ := ts.get(t, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, 1, ts.app.session().Stats().Connections, "clients are still served while draining")

	require.NoError(t, <-stopped)
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(<-closed))
}

// A real Prometheus scrapes the example for a few seconds while clients
// publish, and its HTTP API answers with the example's connection count
// and a rate of deliveries.
func TestPrometheusScrapesExample(t *testing.T) {
	bin := needTool(t, "prometheus")
	ts := startServer(t, nil)

	const clients = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*client.Client
	for i := range clients {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := client.Dial(dctx, ts.wsURL(fmt.Sprintf("?user=u%d", i)))
		dcancel()
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		cs = append(cs, c)
		go func() { // drain events as a page would
			for {
				select {
				case <-c.Events():
				case <-c.Done():
					return
				}
			}
		}()
	}
	published := make(chan struct{})
	go func() { // about 20 notes a second for as long as the test scrapes
		defer close(published)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := cs[i%clients].Publish(ctx, fmt.Appendf(nil, `{"text":"note %d"}`, i)); err != nil {
				return
			}
		}
	}()

	prom := startPrometheus(t, bin, ts.addr)
	// Wait until Prometheus has scraped for most of 5 s (a scrape every
	// 250 ms), so that the rate over 5 s is a rate of the steady stream.
	require.Eventually(t, func() bool {
		n, ok := prom.query(t, `count_over_time(fanout_connections{job="collab"}[5s])`)
		return ok && n >= 16
	}, 30*time.Second, 250*time.Millisecond)
	conns, ok := prom.query(t, `fanout_connections{job="collab"}`)
	require.True(t, ok)
	rate, ok := prom.query(t, `sum(rate(fanout_deliveries_total{job="collab"}[5s]))`)
	require.True(t, ok)
	cancel()
	<-published
	assert.Equal(t, float64(clients), conns)
	// Each note goes to every client: about 20 notes/s × 3 clients.
	assert.Greater(t, rate, 10.0, "deliveries per second")
	assert.Less(t, rate, 200.0, "deliveries per second")
	t.Logf("Prometheus: fanout_connections %v, deliveries %.1f/s", conns, rate)

	// The queries the README suggests for a dashboard run, and those about
	// what this test did answer.
	queries := readmeQueries(t)
	require.NotEmpty(t, queries)
	for _, q := range queries {
		n := len(prom.results(t, q))
		if strings.Contains(q, "deliveries") || strings.Contains(q, "publish_to_write") || strings.Contains(q, "fanout_connections") {
			assert.Positive(t, n, "no answer to %s", q)
		}
	}
}

// readmeQueries returns the PromQL queries of the README's promql block,
// one a line, without their comments.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, block, found := strings.Cut(string(b), "```promql\n")
	require.True(t, found, "README has no promql block")
	block, _, _ = strings.Cut(block, "```")
	var out []string
	for line := range strings.SplitSeq(block, "\n") {
		if q, _, _ := strings.Cut(line, "#"); strings.TrimSpace(q) != "" {
			out = append(out, strings.TrimSpace(q))
		}
	}
	return out
}

// needTool returns the path of a program the tests need. Without it the
// test is skipped, except in CI (CI set), where scripts/prometheus.sh has
// installed it and a missing one fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			require.FailNow(t, name+" not found; scripts/prometheus.sh installs it")
		}
		t.Skip(name + " not found; scripts/prometheus.sh installs it")
	}
	return path
}

// tool is a command the tests run to completion.
type tool struct {
	t   *testing.T
	cmd *exec.Cmd
}

func promtool(t *testing.T, args ...string) *tool {
	return &tool{t: t, cmd: exec.Command(needTool(t, "promtool"), args...)}
}

func (c *tool) stdin(b []byte) *tool { c.cmd.Stdin = bytes.NewReader(b); return c }

func (c *tool) run() {
	c.t.Helper()
	out, err := c.cmd.CombinedOutput()
	require.NoError(c.t, err, "%s:\n%s", strings.Join(c.cmd.Args, " "), out)
}

// promServer is a Prometheus server the test started.
type promServer struct {
	api string // http://127.0.0.1:port
}

// startPrometheus starts Prometheus on a free loopback port, scraping the
// example at target every 250 ms, with its data in a temporary directory.
// It is stopped when the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 250ms
  scrape_timeout: 250ms
scrape_configs:
  - job_name: collab
    static_configs:
      - targets: [%q]
`, target)), 0o600))
	promtool(t, "check", "config", cfg).run()

	addr := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	p := &promServer{api: "http://" + addr}
	require.Eventually(t, func() bool {
		select {
		case err := <-exited:
			require.FailNow(t, "prometheus exited", "%v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(p.api + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
	return p
}

// query runs an instant PromQL query whose answer is one sample and
// returns its value; ok is false while the answer is empty.
func (p *promServer) query(t *testing.T, promql string) (v float64, ok bool) {
	t.Helper()
	res := p.results(t, promql)
	if len(res) == 0 {
		return 0, false
	}
	require.Len(t, res, 1, "query %s", promql)
	s, isString := res[0].Value[1].(string)
	require.True(t, isString)
	v, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return v, true
}

// sample is one series of an instant query's answer.
type sample struct {
	Value [2]any `json:"value"`
}

// results runs an instant PromQL query, which must succeed, and returns
// its samples.
func (p *promServer) results(t *testing.T, promql string) []sample {
	t.Helper()
	resp, err := http.Get(p.api + "/api/v1/query?query=" + url.QueryEscape(promql))
	require.NoError(t, err)
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Equal(t, "success", r.Status, "query %s: %s", promql, r.Error)
	return r.Data.Result
}

// freePort returns a loopback address no one listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
