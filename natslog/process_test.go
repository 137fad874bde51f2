package natslog_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/natslog"
)

// Environment of a node process: this test binary run again as one
// server process of several (see TestMain).
const (
	envNodeNATS   = "NATSLOG_TEST_NODE_NATS"
	envNodeStream = "NATSLOG_TEST_NODE_STREAM"
)

// runNode serves the session "doc" on the stream named in the environment
// and prints its WebSocket URL, until it is killed.
func runNode() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	nc, err := nats.Connect(os.Getenv(envNodeNATS), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		fail(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natslog.New(ctx, js, natslog.Options{Stream: os.Getenv(envNodeStream)})
	if err != nil {
		fail(err)
	}
	s, err := fanout.NewSession("doc", fanout.WithLog(st.Log("doc")))
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	fmt.Printf("ws://%s\n", ln.Addr())
	fail(http.Serve(ln, s))
}

// nodeProcess starts a node process and returns its URL and process.
func nodeProcess(t *testing.T, stream string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envNodeNATS+"="+natsURL(), envNodeStream+"="+stream)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line), cmd
}

// Two node processes on one stream, clients on both; one node is killed
// with SIGKILL while events are published. Its clients move to the other
// node with their positions: every client ends with every event once, in
// order, and every acked publish is in the log.
func TestNodeProcessKilled(t *testing.T) {
	opts := sharedOpts(t)
	urlA, procA := nodeProcess(t, opts.Stream)
	urlB, _ := nodeProcess(t, opts.Stream)

	var ws []*watcher
	var onA []*client.Client
	for i := range 4 {
		w := newWatcher()
		ws = append(ws, w)
		if i%2 == 0 {
			onA = append(onA, watch(t, urlA, w))
		} else {
			watch(t, urlB, w)
		}
	}

	// Publishers: this process on the log, and a client of each node.
	_, js := connect(t, natsURL())
	st, err := natslog.New(context.Background(), js, opts)
	require.NoError(t, err)
	l := st.Log("doc")
	pubA, pubB := watch(t, urlA, newWatcher()), watch(t, urlB, newWatcher())
	stop := make(chan struct{})
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	ack := func(data string, seq uint64) {
		mu.Lock()
		acked[data] = seq
		mu.Unlock()
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			data := fmt.Sprintf(`{"log":%d}`, i)
			if a, err := l.Append(context.Background(), "", "", []byte(data)); err == nil {
				ack(data, a.Seq)
			}
		}
	})
	for name, c := range map[string]*client.Client{"a": pubA, "b": pubB} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				data := fmt.Sprintf(`{"client":%q,"i":%d}`, name, i)
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				seq, err := c.Publish(ctx, []byte(data))
				cancel()
				if err == nil {
					ack(data, seq)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, procA.Process.Kill())
	// The clients of the dead node move to the other one, from where
	// they are.
	for i, c := range onA {
		require.NoError(t, c.Close())
		watch(t, urlB, ws[2*i])
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	epoch, recs := logged(t, l)
	at := map[string]uint64{}
	for _, r := range recs {
		_, dup := at[string(r.Data)]
		require.False(t, dup, "%s appended twice", r.Data)
		at[string(r.Data)] = r.Seq
	}
	for data, seq := range acked {
		require.Equal(t, seq, at[data], "acked publish %s", data)
	}
	for _, w := range ws {
		w.reached(t, epoch, uint64(len(recs)))
		w.got(t, epoch, recs)
		require.Zero(t, w.resets)
	}
	t.Logf("%d events, %d acked", len(recs), len(acked))
}
