package redislog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/redislog"
)

// Each fault case runs two nodes on a Redis of its own, readers on both,
// and a publishing client on each, then does something to Redis while
// they run. Afterwards every reader must be gap-free within each epoch
// (a change of epoch only after a reset, that is resumed:false), all
// readers must agree on what each (epoch, seq) is (no seq reused), no
// publish may be in the log twice and, unless Redis lost its data, every
// acked publish is in the log, the epoch is the same and no reader was
// reset.
func TestFaults(t *testing.T) {
	cases := []struct {
		name  string
		aof   bool
		loses bool // Redis loses its data: a new epoch
		down  bool // Redis is unreachable for a while: publishes are refused
		fault func(t *testing.T, p *redisProc)
	}{
		{"SIGKILL, restart with AOF", true, false, true, func(t *testing.T, p *redisProc) {
			p.kill()
			time.Sleep(500 * time.Millisecond)
			p.start(true)
		}},
		{"SIGKILL, restart without persistence", false, true, false, func(t *testing.T, p *redisProc) {
			p.restart(false)
		}},
		{"SIGSTOP past the append timeout, SIGCONT", false, false, true, func(t *testing.T, p *redisProc) {
			p.signal(syscall.SIGSTOP)
			time.Sleep(6 * time.Second)
			p.signal(syscall.SIGCONT)
		}},
		{"FLUSHALL", false, true, false, func(t *testing.T, p *redisProc) {
			require.NoError(t, p.do("FLUSHALL").Error())
		}},
		{"head goes backwards, as after an asynchronous failover", false, true, false, func(t *testing.T, p *redisProc) {
			// What a replica promoted without the last writes looks
			// like: the head 5 lower, the last 5 events missing.
			const lose = `local s = tonumber(redis.call('HGET', KEYS[1], 's'))
for i = s - 4, s do redis.call('XDEL', KEYS[2], i .. '-0') end
redis.call('HSET', KEYS[1], 's', s - 5)
return s`
			s, err := p.do("EVAL", lose, "2", "{fanout:doc}:m", "{fanout:doc}:s").AsInt64()
			require.NoError(t, err)
			require.Greater(t, s, int64(5))
		}},
		{"CLIENT KILL TYPE pubsub", false, false, false, func(t *testing.T, p *redisProc) {
			n, err := p.do("CLIENT", "KILL", "TYPE", "pubsub").AsInt64()
			require.NoError(t, err)
			require.GreaterOrEqual(t, n, int64(2), "each node's pub/sub connection killed")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runFault(t, tc.aof, tc.loses, tc.down, tc.fault)
		})
	}
}

// publisher is a client publishing numbered events until stopped,
// recording which were acked.
type publisher struct {
	id    int
	c     *client.Client
	mu    sync.Mutex
	acked []string
}

func (p *publisher) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		data := fmt.Sprintf(`{"p":%d,"i":%d}`, p.id, i)
		if _, err := p.c.Publish(ctx, []byte(data)); err != nil {
			return // ctx ended: the publish is not acked
		}
		p.mu.Lock()
		p.acked = append(p.acked, data)
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

func runFault(t *testing.T, aof, loses, down bool, fault func(*testing.T, *redisProc)) {
	rp := startRedis(t, aof)
	opts := redislog.Options{ProbeInterval: 200 * time.Millisecond, CheckInterval: time.Second}
	nodes := []*node{startNode(t, rp.addr, opts), startNode(t, rp.addr, opts)}
	epoch0 := nodes[0].sess.Epoch()

	var readers []*recorder
	var readerClients []*client.Client
	for i := range 6 {
		r := &recorder{}
		readers = append(readers, r)
		readerClients = append(readerClients, dialRec(t, nodes[i%2].url(), r))
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pubs []*publisher
	for i := range 2 {
		p := &publisher{id: i, c: dialRec(t, nodes[i].url(), &recorder{})}
		pubs = append(pubs, p)
		wg.Go(func() { p.run(ctx) })
	}
	time.Sleep(300 * time.Millisecond)
	fault(t, rp)
	time.Sleep(time.Second)
	stop()
	wg.Wait()

	// Wait for the log to settle (a publish retried across the fault may
	// still commit) and every reader to reach its head.
	var epoch string
	var head uint64
	probe := startNode(t, rp.addr, opts)
	require.Eventually(t, func() bool {
		e, h, err := probe.store.Log("doc").Head(context.Background())
		if err != nil {
			return false
		}
		settled := e == epoch && h == head
		epoch, head = e, h
		if !settled {
			return false
		}
		for _, r := range readers {
			if s, e := r.last(); e != epoch || s != head {
				return false
			}
		}
		return true
	}, 60*time.Second, 200*time.Millisecond, "readers reach the log's head")

	// The log's records of the final epoch.
	var recs []fanout.Record
	for after := uint64(0); ; {
		batch, err := probe.store.Log("doc").Read(context.Background(), epoch, after, 1000)
		if errors.Is(err, fanout.ErrGone) {
			break // trimmed; not with the default window here
		}
		require.NoError(t, err)
		if len(batch) == 0 {
			break
		}
		recs = append(recs, batch...)
		after = batch[len(batch)-1].Seq
	}
	var acked, unavailable uint64
	for _, p := range pubs {
		p.mu.Lock()
		acked += uint64(len(p.acked))
		p.mu.Unlock()
		unavailable += p.c.Stats().Unavailable
	}
	t.Logf("epoch %s -> %s, head %d, %d publishes acked, %d refused as unavailable", epoch0, epoch, head, acked, unavailable)
	if down {
		require.NotZero(t, unavailable, "publishes refused while Redis was down")
	}
	inLog := map[string]int{}
	for _, r := range recs {
		inLog[string(r.Data)]++
		require.Equal(t, 1, inLog[string(r.Data)], "%s appended twice", r.Data)
	}

	// Readers: gap-free within an epoch, a new epoch only after a reset,
	// and one meaning for each (epoch, seq).
	meaning := map[string]string{}
	for i, r := range readers {
		events, resets := r.snapshot()
		for j, ev := range events {
			key := fmt.Sprintf("%s/%d", ev.Epoch, ev.Seq)
			if m, ok := meaning[key]; ok {
				require.JSONEq(t, m, string(ev.Data), "reader %d: seq %d of epoch %s differs between readers", i, ev.Seq, ev.Epoch)
			}
			meaning[key] = string(ev.Data)
			if j == 0 {
				continue
			}
			prev := events[j-1]
			if ev.Epoch == prev.Epoch {
				require.Equal(t, prev.Seq+1, ev.Seq, "reader %d: gap or repeat", i)
			} else {
				require.Contains(t, resets, ev.Epoch, "reader %d: moved to epoch %s without a reset", i, ev.Epoch)
			}
		}
		if !loses {
			require.Empty(t, resets, "reader %d reset though Redis kept its data", i)
		}
	}
	for _, r := range recs {
		if m, ok := meaning[fmt.Sprintf("%s/%d", epoch, r.Seq)]; ok {
			require.JSONEq(t, m, string(r.Data), "a reader and the log differ at seq %d", r.Seq)
		}
	}
	if loses {
		require.NotEqual(t, epoch0, epoch, "Redis lost its data: a new epoch")
		for i, r := range readers {
			_, resets := r.snapshot()
			require.Contains(t, resets, epoch, "reader %d told resumed:false", i)
		}
		return
	}
	require.Equal(t, epoch0, epoch, "Redis kept its data: the same epoch")
	for _, p := range pubs {
		p.mu.Lock()
		for _, d := range p.acked {
			require.Equal(t, 1, inLog[d], "acked publish %s in the log", d)
		}
		p.mu.Unlock()
	}
	for i, c := range readerClients {
		// The readers' connections outlived the fault: the nodes' did not
		// depend on Redis.
		require.Zero(t, c.Stats().Reconnects, "reader %d reconnected", i)
	}
}
