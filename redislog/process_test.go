package redislog_test

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

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/redislog"
)

// The test binary is also the node program: run with nodeEnv set to a
// Redis address, it serves the session "doc" on that Redis (keys under
// nodePrefixEnv) on a free port, prints "listening ADDR", and runs until
// killed.
const (
	nodeEnv       = "REDISLOG_TEST_NODE"
	nodePrefixEnv = "REDISLOG_TEST_PREFIX"
)

func runNodeProcess(addr, prefix string) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	st, err := redislog.New(c, redislog.Options{Prefix: prefix})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sess, err := fanout.NewSession("doc", fanout.WithLog(st.Log("doc")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", l.Addr())
	_ = http.Serve(l, sess)
}

// nodeProc is a node in a process of its own.
type nodeProc struct {
	cmd *exec.Cmd
	url string
}

func startNodeProcess(t *testing.T, prefix string) *nodeProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+sharedAddr, nodePrefixEnv+"="+prefix)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &nodeProc{cmd: cmd}
	t.Cleanup(p.kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	require.True(t, ok, "node said %q", line)
	p.url = "ws://" + addr
	return p
}

func (p *nodeProc) kill() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill() // SIGKILL
		_ = p.cmd.Wait()
	}
}

// Two node processes, clients on both; one node is killed with SIGKILL
// while publishers run. Its clients fail over to the other node and, like
// every client, end with every event once, in order, without a reset.
func TestNodeProcessKilled(t *testing.T) {
	needRedis(t, sharedAddr)
	prefix := uniquePrefix()
	t.Cleanup(func() { deletePrefix(t, newClient(t, sharedAddr), prefix) })
	nodes := []*nodeProc{startNodeProcess(t, prefix), startNodeProcess(t, prefix)}

	var readers []*recorder
	var readerClients []*client.Client
	for i := range 8 {
		own, other := nodes[i%2], nodes[(i+1)%2]
		r := &recorder{}
		var c *client.Client
		require.Eventually(t, func() bool { // 503 until the node has read the log's head
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var err error
			c, err = client.Dial(ctx, own.url, client.WithHandler(r.handle), client.WithOnReset(r.reset),
				client.WithFailover(other.url), client.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
			return err == nil
		}, 10*time.Second, 20*time.Millisecond)
		t.Cleanup(func() { _ = c.Close() })
		readers = append(readers, r)
		readerClients = append(readerClients, c)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pubs []*publisher
	for i := range 2 {
		p := &publisher{id: i, c: dialRec(t, nodes[i].url, &recorder{}, client.WithFailover(nodes[(i+1)%2].url))}
		pubs = append(pubs, p)
		wg.Go(func() { p.run(ctx) })
	}
	time.Sleep(300 * time.Millisecond)
	nodes[0].kill()
	time.Sleep(700 * time.Millisecond)
	stop()
	wg.Wait()

	st := newStore(t, newClient(t, sharedAddr), redislog.Options{Prefix: prefix})
	var epoch string
	var head uint64
	require.Eventually(t, func() bool {
		e, h, err := st.Log("doc").Head(context.Background())
		if err != nil || e != epoch || h != head {
			epoch, head = e, h
			return false
		}
		for _, r := range readers {
			if s, e := r.last(); e != epoch || s != head {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "readers reach the log's head")

	acked := map[string]bool{}
	for _, p := range pubs {
		for _, d := range p.acked {
			acked[d] = true
		}
	}
	var failovers uint64
	for i, r := range readers {
		events, resets := r.snapshot()
		require.Empty(t, resets, "reader %d", i)
		require.Len(t, events, int(head), "reader %d", i)
		seen := map[string]bool{}
		for j, ev := range events {
			require.Equal(t, uint64(j+1), ev.Seq, "reader %d", i)
			require.False(t, seen[string(ev.Data)], "reader %d got %s twice", i, ev.Data)
			seen[string(ev.Data)] = true
		}
		for d := range acked {
			require.True(t, seen[d], "reader %d misses acked %s", i, d)
		}
		failovers += readerClients[i].Stats().Failovers
	}
	t.Logf("%d events, %d acked publishes, %d failovers", head, len(acked), failovers)
	require.NotZero(t, failovers, "the killed node's readers moved")
}
