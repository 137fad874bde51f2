package natslog_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/logtest"
	"github.com/fanout-go/fanout/natslog"
)

// faultRun is two nodes on one server of the test's own, a client on
// each, and publishers on both, while the test does something to the
// server.
type faultRun struct {
	t      *testing.T
	a, b   *node
	wa, wb *watcher
	ca, cb *client.Client
	acked  *acked
	stop   chan struct{}
	wg     sync.WaitGroup
	epoch  string
}

func startFaultRun(t *testing.T, url string, opts natslog.Options) *faultRun {
	r := &faultRun{t: t, stop: make(chan struct{}), acked: newAcked()}
	r.a, r.b = newRecordingNode(t, url, opts, "doc", r.acked), newRecordingNode(t, url, opts, "doc", r.acked)
	r.epoch = r.a.s.Epoch()
	r.wa, r.wb = newWatcher(), newWatcher()
	r.ca, r.cb = watch(t, r.a.url(), r.wa), watch(t, r.b.url(), r.wb)
	for p := range 2 {
		r.wg.Go(func() { publishUntil(r.stop, r.acked, fmt.Sprint(p), r.a.s, r.b.s) })
	}
	t.Cleanup(r.stopPublishing)
	return r
}

func (r *faultRun) stopPublishing() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// ackedNow is how many publishes were acked so far.
func (r *faultRun) ackedNow() int { return r.acked.count() }

// publishesGoOn waits until more publishes were acked than now.
func (r *faultRun) publishesGoOn() {
	r.t.Helper()
	n := r.ackedNow()
	require.Eventually(r.t, func() bool { return r.ackedNow() > n+100 }, 30*time.Second, 10*time.Millisecond, "publishes do not go on")
}

// finish stops the publishers and checks the log and both clients: every
// publish acked in the log's current epoch is in the log at its seq,
// nothing is there twice, and both clients received it all in order. It
// returns the log's epoch.
func (r *faultRun) finish() string {
	r.t.Helper()
	r.stopPublishing()
	epoch, recs := logged(r.t, r.a.log)
	n := checkAcked(r.t, r.acked, epoch, recs)
	require.Positive(r.t, n, "no publish acked in the last epoch")
	for _, w := range []*watcher{r.wa, r.wb} {
		w.reached(r.t, epoch, uint64(len(recs)))
	}
	sameOrder(r.t, r.wa, r.wb)
	r.wa.got(r.t, epoch, recs)
	r.wb.got(r.t, epoch, recs)
	r.t.Logf("%d events, %d acked in epoch %s, %d publishes failed, resets %d/%d",
		len(recs), n, epoch, r.acked.failed, r.wa.resets, r.wb.resets)
	return epoch
}

// A server killed with SIGKILL and restarted on its file store loses
// nothing: same epoch, every acked publish there, clients without a gap
// or a reset.
func TestServerKilledAndRestarted(t *testing.T) {
	srv := startNATS(t)
	r := startFaultRun(t, srv.url(), natslog.Options{})
	r.publishesGoOn()
	srv.kill()
	time.Sleep(300 * time.Millisecond)
	srv.start()
	r.publishesGoOn()
	require.Equal(t, r.epoch, r.finish())
	require.Zero(t, r.wa.resets+r.wb.resets)
}

// A server that comes back without its store gives the session a new
// epoch: clients are told (a reset), never shown a gap, and publishing
// goes on in the new epoch.
func TestServerStoreLost(t *testing.T) {
	srv := startNATS(t)
	r := startFaultRun(t, srv.url(), natslog.Options{})
	r.publishesGoOn()
	srv.kill()
	require.NoError(t, os.RemoveAll(srv.dir))
	srv.start()
	r.publishesGoOn()
	require.NotEqual(t, r.epoch, r.finish())
	require.Positive(t, r.wa.resets)
	require.Positive(t, r.wb.resets)
}

// A server stopped with SIGSTOP: publishes fail with ErrUnavailable
// within the append timeout, nothing is acked, clients stay connected;
// after SIGCONT delivery resumes without a gap.
func TestServerStopped(t *testing.T) {
	srv := startNATS(t)
	r := startFaultRun(t, srv.url(), natslog.Options{})
	r.publishesGoOn()
	r.stopPublishing()
	srv.stop()
	start := time.Now()
	_, err := r.a.s.Publish(context.Background(), []byte(`{"while":"stopped"}`))
	require.ErrorIs(t, err, fanout.ErrUnavailable)
	require.Less(t, time.Since(start), 10*time.Second)
	srv.cont()

	r.stop = make(chan struct{})
	r.wg.Go(func() { publishUntil(r.stop, r.acked, "after", r.a.s, r.b.s) })
	r.publishesGoOn()
	require.Equal(t, r.epoch, r.finish())
	require.Zero(t, r.wa.resets+r.wb.resets)
	require.Zero(t, r.ca.Stats().Reconnects+r.cb.Stats().Reconnects, "clients were disconnected")
}

// A stream purged is a new epoch, found even while nothing is published.
func TestStreamPurged(t *testing.T) {
	opts := sharedOpts(t)
	opts.Probe = 50 * time.Millisecond
	r := startFaultRun(t, natsURL(), opts)
	r.publishesGoOn()
	r.stopPublishing()
	_, js := connect(t, natsURL())
	st, err := js.Stream(context.Background(), opts.Stream)
	require.NoError(t, err)
	require.NoError(t, st.Purge(context.Background()))
	require.Eventually(t, func() bool {
		return r.a.s.Epoch() != r.epoch && r.b.s.Epoch() == r.a.s.Epoch()
	}, 10*time.Second, 10*time.Millisecond, "no new epoch after a purge")
	require.Eventually(t, func() bool {
		e, _ := r.wa.position()
		return e == r.a.s.Epoch()
	}, 10*time.Second, 10*time.Millisecond, "the client was not reset")

	r.stop = make(chan struct{})
	r.wg.Go(func() { publishUntil(r.stop, r.acked, "after", r.a.s, r.b.s) })
	r.publishesGoOn()
	require.NotEqual(t, r.epoch, r.finish())
}

// A three-server JetStream cluster, stream with three replicas, whose
// stream leader is killed while publishers run: publishes fail or
// succeed, no acked publish is lost, the epoch stays, clients have no gap.
func TestClusterLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster takes seconds to form")
	}
	servers, url := startCluster(t)
	opts := natslog.Options{Stream: "CLUSTERED", Replicas: 3}
	_, js := connect(t, url)
	clusterStream(t, js, opts)

	r := startFaultRun(t, url, opts)
	r.publishesGoOn()
	leader := streamLeader(t, js, opts.Stream)
	for _, s := range servers {
		if s.name == leader {
			s.kill()
			defer s.start()
		}
	}
	r.publishesGoOn()
	require.NotEqual(t, leader, streamLeader(t, js, opts.Stream))
	require.Equal(t, r.epoch, r.finish())
	require.Zero(t, r.wa.resets+r.wb.resets)
}

func streamLeader(t *testing.T, js jetstream.JetStream, stream string) string {
	t.Helper()
	var leader string
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		if c := st.CachedInfo().Cluster; c != nil {
			leader = c.Leader
		}
		return leader != ""
	}, 30*time.Second, 50*time.Millisecond)
	return leader
}

// startCluster starts a three-server JetStream cluster on loopback and
// returns its servers and a URL naming all three.
func startCluster(t *testing.T) ([]*natsServer, string) {
	t.Helper()
	needVersion(t, 2, 9, 21)
	var ports []int
	for range 3 {
		ports = append(ports, freePort(t))
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var servers []*natsServer
	var urls []string
	for i := range 3 {
		s := startNATS(t, "-n", fmt.Sprintf("n%d", i), "--cluster_name", "fanouttest",
			"--cluster", routes[i], "--routes", strings.Join(routes, ","))
		s.name = fmt.Sprintf("n%d", i)
		servers = append(servers, s)
		urls = append(urls, s.url())
	}
	return servers, strings.Join(urls, ",")
}

// clusterStream waits until the cluster has elected its leaders and
// created the stream of opts.
func clusterStream(t *testing.T, js jetstream.JetStream, opts natslog.Options) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := natslog.New(ctx, js, opts)
		return err == nil
	}, 60*time.Second, 200*time.Millisecond, "the cluster did not take the stream")
	jsReady(t, js, opts.Stream)
}

// The conformance suite on a three-server cluster, streams with three
// replicas.
func TestClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster takes seconds to form")
	}
	_, url := startCluster(t)
	_, js := connect(t, url)
	clusterStream(t, js, natslog.Options{Stream: "WARMUP", Replicas: 3})
	logtest.Run(t, logtest.Config{
		New: func(t *testing.T, window, _ int) logtest.Backend {
			b := &backend{url: url, js: js, opts: natslog.Options{
				Stream: uniqueStream(t, js), Window: window, Replicas: 3, Probe: 100 * time.Millisecond,
			}}
			clusterStream(t, js, b.opts)
			return b
		},
		Lose: func(t *testing.T, b logtest.Backend) {
			nb := b.(*backend)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, nb.js.DeleteStream(ctx, nb.opts.Stream))
		},
		DedupBeyondWindow: true,
	})
}
