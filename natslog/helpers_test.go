package natslog_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/natslog"
)

// node is one server process of several, in this test process: its own
// NATS connection (reconnecting forever), store and session, on its own
// HTTP server.
type node struct {
	s   *fanout.Session
	hs  *httptest.Server
	log fanout.Log
}

func (n *node) url() string { return "ws" + strings.TrimPrefix(n.hs.URL, "http") }

func newNode(t *testing.T, url string, opts natslog.Options, session string) *node {
	t.Helper()
	return newRecordingNode(t, url, opts, session, nil)
}

// newRecordingNode is newNode whose log tells a where it put each append
// (a nil a: none).
func newRecordingNode(t *testing.T, url string, opts natslog.Options, session string, a *acked) *node {
	t.Helper()
	_, js := connect(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natslog.New(ctx, js, opts)
	require.NoError(t, err)
	l := st.Log(session)
	if a != nil {
		l = recordingLog{Log: l, a: a}
	}
	s, err := fanout.NewSession(session, fanout.WithLog(l))
	require.NoError(t, err)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	require.Eventually(t, func() bool { return s.Epoch() != "" }, 10*time.Second, time.Millisecond)
	return &node{s: s, hs: hs, log: l}
}

// watcher checks what one client application receives: events in seq
// order without a gap, a new epoch only after a reset.
type watcher struct {
	mu     sync.Mutex
	epoch  string
	pos    uint64
	data   map[string]string // epoch/seq to data
	base   map[string]uint64 // epoch to the head a reset started it at
	resets int
	bad    []string
}

func newWatcher() *watcher {
	return &watcher{data: map[string]string{}, base: map[string]uint64{}}
}

func (w *watcher) event(ev client.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.epoch == "" {
		w.epoch = ev.Epoch
	}
	if ev.Epoch != w.epoch || ev.Seq != w.pos+1 {
		w.bad = append(w.bad, fmt.Sprintf("got %s/%d after %s/%d", ev.Epoch, ev.Seq, w.epoch, w.pos))
	}
	w.pos = ev.Seq
	w.data[fmt.Sprintf("%s/%d", ev.Epoch, ev.Seq)] = string(ev.Data)
}

func (w *watcher) reset(head uint64, epoch string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resets++
	w.epoch, w.pos = epoch, head
	w.base[epoch] = head
}

func (w *watcher) position() (string, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch, w.pos
}

func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Empty(t, w.bad, "events out of order")
}

// got checks that w received recs of epoch, all those after the head its
// reset to epoch (if any) started it at.
func (w *watcher) got(t *testing.T, epoch string, recs []fanout.Record) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rec := range recs {
		if rec.Seq > w.base[epoch] {
			require.Equal(t, string(rec.Data), w.data[fmt.Sprintf("%s/%d", epoch, rec.Seq)], "seq %d", rec.Seq)
		}
	}
}

// reached waits until w has received everything up to head in epoch.
func (w *watcher) reached(t *testing.T, epoch string, head uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		e, p := w.position()
		return e == epoch && p == head
	}, 20*time.Second, 5*time.Millisecond, "watcher did not reach %s/%d", epoch, head)
	w.check(t)
}

// watch connects a client to url after position (epoch, after) that
// reports to w.
func watch(t *testing.T, url string, w *watcher) *client.Client {
	t.Helper()
	epoch, after := w.position()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url,
		client.WithStartAfter(after, epoch),
		client.WithHandler(w.event),
		client.WithOnReset(w.reset),
		client.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sameOrder checks that watchers got the same data at every seq they
// both received.
func sameOrder(t *testing.T, ws ...*watcher) {
	t.Helper()
	for _, a := range ws[1:] {
		a.mu.Lock()
		for k, v := range ws[0].data {
			if got, ok := a.data[k]; ok {
				require.Equal(t, v, got, "event %s differs between clients", k)
			}
		}
		a.mu.Unlock()
	}
}

// logged reads the whole retained log of l in its current epoch.
func logged(t *testing.T, l fanout.Log) (string, []fanout.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var epoch string
	var head uint64
	require.Eventually(t, func() bool {
		var err error
		epoch, head, err = l.Head(ctx)
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
	var out []fanout.Record
	for after := uint64(0); after < head; {
		recs, err := l.Read(ctx, epoch, after, 500)
		require.NoError(t, err)
		require.NotEmpty(t, recs)
		for _, r := range recs {
			require.Equal(t, after+1, r.Seq)
			after = r.Seq
		}
		out = append(out, recs...)
	}
	return epoch, out
}

// acked is what publishers were told, and where the log put each
// publish.
type acked struct {
	mu       sync.Mutex
	ok       map[string]bool            // data of the publishes acked
	appended map[string]fanout.Appended // data to where the log put it
	failed   int
}

func newAcked() *acked {
	return &acked{ok: map[string]bool{}, appended: map[string]fanout.Appended{}}
}

func (a *acked) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ok)
}

// recordingLog is a log that tells a what its appends returned.
type recordingLog struct {
	fanout.Log
	a *acked
}

func (l recordingLog) Append(ctx context.Context, from, id string, data []byte) (fanout.Appended, error) {
	app, err := l.Log.Append(ctx, from, id, data)
	if err == nil {
		l.a.mu.Lock()
		l.a.appended[string(data)] = app
		l.a.mu.Unlock()
	}
	return app, err
}

// publishUntil publishes on each session in turn until stop is closed.
func publishUntil(stop <-chan struct{}, a *acked, tag string, ss ...*fanout.Session) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		data := fmt.Sprintf(`{"p":%q,"i":%d}`, tag, i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := ss[i%len(ss)].Publish(ctx, []byte(data))
		cancel()
		a.mu.Lock()
		if err != nil {
			a.failed++
			if os.Getenv("NATSLOG_DEBUG") != "" {
				fmt.Println("publish:", err)
			}
		} else {
			a.ok[data] = true
		}
		a.mu.Unlock()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// checkAcked checks that every publish acked in epoch is in recs at its
// seq, and that nothing is in recs twice.
func checkAcked(t *testing.T, a *acked, epoch string, recs []fanout.Record) (inEpoch int) {
	t.Helper()
	at := map[string]uint64{}
	for _, r := range recs {
		_, dup := at[string(r.Data)]
		require.False(t, dup, "%s appended twice", r.Data)
		at[string(r.Data)] = r.Seq
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for data := range a.ok {
		app, ok := a.appended[data]
		require.True(t, ok, "publish %s acked but not appended", data)
		if app.Epoch != epoch {
			continue
		}
		inEpoch++
		got, ok := at[data]
		require.True(t, ok, "acked publish %s (seq %d) is not in the log", data, app.Seq)
		require.Equal(t, app.Seq, got, "acked publish %s", data)
	}
	return inEpoch
}

// natsServer is a nats-server process of this test, with its own port and
// store directory.
type natsServer struct {
	t    *testing.T
	name string
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsServerBinary is the nats-server the fault tests run: NATS_SERVER_BIN,
// or the one on PATH.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("NATS_SERVER_BIN")
	if p == "" {
		var err error
		if p, err = exec.LookPath("nats-server"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("nats-server not installed: %v", err)
			}
			t.Skipf("nats-server not installed: %v", err)
		}
	}
	return p
}

// needVersion skips the test, or fails it with CI=true, when the
// nats-server the tests run is older than major.minor.patch.
func needVersion(t *testing.T, major, minor, patch int) {
	t.Helper()
	out, err := exec.Command(natsServerBinary(t), "--version").Output()
	require.NoError(t, err)
	v := strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(string(out), "nats-server:")), "v")
	if !natslog.AtLeast(v, major, minor, patch) {
		msg := fmt.Sprintf("needs nats-server %d.%d.%d or later (NATS_SERVER_BIN), found %s", major, minor, patch, v)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// startNATS starts a JetStream server with a file store in a directory of
// its own; it is killed at the end of the test.
func startNATS(t *testing.T, extra ...string) *natsServer {
	t.Helper()
	s := &natsServer{t: t, port: freePort(t), dir: t.TempDir(), args: extra}
	s.start()
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir}, s.args...)
	s.cmd = exec.Command(natsServerBinary(s.t), args...)
	require.NoError(s.t, s.cmd.Start())
	require.Eventually(s.t, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "nats-server on port %d did not start", s.port)
}

// stop stops the server with SIGSTOP and waits until it is stopped.
func (s *natsServer) stop() {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGSTOP))
	require.Eventually(s.t, func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
		// The state follows the command name in parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		return err == nil && i > 0 && i+2 < len(stat) && stat[i+2] == 'T'
	}, 5*time.Second, time.Millisecond)
}

// cont resumes a stopped server.
func (s *natsServer) cont() { require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGCONT)) }

// kill ends the server with SIGKILL.
func (s *natsServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// jsReady waits until JetStream at url answers with stream's leader known.
func jsReady(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info := st.CachedInfo()
		return info.Cluster == nil || info.Cluster.Leader != "" || len(info.Cluster.Replicas) == 0
	}, 30*time.Second, 50*time.Millisecond)
}

// testingProcs is GOMAXPROCS, as RunParallel counts it.
func testingProcs() int { return runtime.GOMAXPROCS(0) }

// startHTTP serves s on a loopback HTTP server until the benchmark ends
// and returns its WebSocket URL.
func startHTTP(b *testing.B, s *fanout.Session) string {
	hs := httptest.NewServer(s)
	b.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}
