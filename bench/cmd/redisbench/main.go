// Command redisbench measures fanout on a shared Redis log (redislog), next
// to fanout in memory, in one run on one machine:
//
//   - the Redis client: rueidis against go-redis v9, running the same
//     append-shaped Lua script from 64 goroutines;
//   - publishes per second through one node, from 64 concurrent
//     publishers, into one session and spread over 1,000 sessions;
//   - publish-to-delivery latency across nodes at a light load: published
//     on one node, received by a client of another.
//
// It needs Redis at -redis (scripts/services.sh starts one on
// 127.0.0.1:6379); its keys are under a prefix of its own, deleted at the
// end. Deliveries per second at 1,000 connections are measured by
// fanbench (peers fanout-redis, fanout-redis2, centrifuge-redis).
//
//	cd bench && go run ./cmd/redisbench
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/client"
	"github.com/fanout-go/fanout/redislog"
)

var (
	redisAddr  = flag.String("redis", "127.0.0.1:6379", "Redis address")
	dur        = flag.Duration("d", 5*time.Second, "duration of each throughput measurement")
	publishers = flag.Int("publishers", 64, "concurrent publishers")
	latRate    = flag.Int("lat-rate", 200, "publishes per second in the latency measurement")
	latDur     = flag.Duration("lat-d", 10*time.Second, "duration of the latency measurement")
)

func main() {
	flag.Parse()
	prefix := fmt.Sprintf("redisbench-%d-%d", os.Getpid(), time.Now().UnixNano())
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{*redisAddr}, DisableCache: true})
	check(err)
	defer func() {
		cleanup(rc, prefix)
		rc.Close()
	}()
	fmt.Printf("redisbench: %s, %d CPUs, GOMAXPROCS %d, Redis at %s, load average %s\n",
		runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), *redisAddr, loadavg())

	fmt.Printf("\n## Redis client: the append script from %d goroutines for %v\n\n", *publishers, *dur)
	fmt.Println("| client | scripts/s | allocations per script |")
	fmt.Println("|---|---|---|")
	for _, c := range []struct {
		name string
		run  func(key string) (int, float64)
	}{
		{"rueidis v1.0.79", func(key string) (int, float64) { return clientRueidis(rc, key) }},
		{"go-redis v9", func(key string) (int, float64) { return clientGoRedis(key) }},
	} {
		n, allocs := c.run("{" + prefix + ":client}")
		fmt.Printf("| %s | %.0f | %.1f |\n", c.name, float64(n)/dur.Seconds(), allocs)
	}

	fmt.Printf("\n## Publishes/s through one node, %d publishers, %v\n\n", *publishers, *dur)
	fmt.Println("| log | one session | 1,000 sessions |")
	fmt.Println("|---|---|---|")
	for _, onRedis := range []bool{false, true} {
		name := "memory"
		if onRedis {
			name = "Redis (redislog)"
		}
		one := publishRate(rc, prefix+"-one", onRedis, 1)
		many := publishRate(rc, prefix+"-many", onRedis, 1000)
		fmt.Printf("| %s | %.0f | %.0f |\n", name, one, many)
	}

	fmt.Printf("\n## Publish to delivery, %d publishes/s for %v, default 5 ms batch window\n\n", *latRate, *latDur)
	fmt.Println("| setup | p50 | p99 | max | events |")
	fmt.Println("|---|---|---|---|---|")
	for _, cross := range []bool{false, true} {
		name := "memory, one node"
		if cross {
			name = "Redis, published on node B, client on node A"
		}
		lat := latency(rc, prefix+"-lat", cross)
		slices.Sort(lat)
		fmt.Printf("| %s | %v | %v | %v | %d |\n", name, pct(lat, 0.50), pct(lat, 0.99), lat[len(lat)-1].Round(10*time.Microsecond), len(lat))
	}
}

// appendLua does what an append does in Redis, without the dedup: the
// head, HINCRBY, XADD with MAXLEN ~, PUBLISH.
const appendLua = `
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], string.format('%d-0', seq), 'd', ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return {redis.call('HGET', KEYS[1], 'e'), seq}
`

var payload = strings.Repeat("x", 64)

// hammer runs op from the publishers until the duration is over and
// returns how many ran and the allocations per op in this process.
func hammer(op func() error) (int, float64) {
	var n atomic.Int64
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *publishers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				check(op())
				n.Add(1)
			}
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&ms1)
	return int(n.Load()), float64(ms1.Mallocs-ms0.Mallocs) / float64(n.Load())
}

func clientRueidis(rc rueidis.Client, key string) (int, float64) {
	script := rueidis.NewLuaScript(appendLua)
	keys := []string{key + ":m", key + ":s", key + ":c"}
	return hammer(func() error {
		_, err := script.Exec(context.Background(), rc, keys, []string{payload, "10000"}).ToArray()
		return err
	})
}

func clientGoRedis(key string) (int, float64) {
	rdb := goredis.NewClient(&goredis.Options{Addr: *redisAddr, PoolSize: *publishers})
	defer rdb.Close()
	script := goredis.NewScript(appendLua)
	keys := []string{key + ":m", key + ":s", key + ":c"}
	return hammer(func() error {
		_, err := script.Run(context.Background(), rdb, keys, payload, "10000").Slice()
		return err
	})
}

// publishRate returns server publishes per second through one node into
// sessions sessions, the publishers spread over them.
func publishRate(rc rueidis.Client, prefix string, onRedis bool, sessions int) float64 {
	var store *redislog.Store
	if onRedis {
		var err error
		store, err = redislog.New(rc, redislog.Options{Prefix: prefix})
		check(err)
		defer store.Close()
	}
	ss := make([]*fanout.Session, sessions)
	for i := range ss {
		opts := []fanout.Option{fanout.WithHistory(1000), fanout.WithDedupWindow(100), fanout.WithPresence(false)}
		if onRedis {
			opts = append(opts, fanout.WithLog(store.Log("s"+strconv.Itoa(i))))
		}
		s, err := fanout.NewSession("s"+strconv.Itoa(i), opts...)
		check(err)
		ss[i] = s
		defer s.Close()
	}
	for _, s := range ss {
		for s.Epoch() == "" {
			time.Sleep(time.Millisecond)
		}
	}
	var next atomic.Uint64
	data := []byte(`{"p":"` + payload + `"}`)
	n, _ := hammer(func() error {
		s := ss[next.Add(1)%uint64(len(ss))]
		_, err := s.Publish(context.Background(), data)
		return err
	})
	return float64(n) / dur.Seconds()
}

// latency publishes at latRate on one session and returns the delays a
// client sees: on one in-memory node, or published on node B and received
// through node A, both on Redis.
func latency(rc rueidis.Client, prefix string, cross bool) []time.Duration {
	var a, b *fanout.Session
	if cross {
		for _, s := range []**fanout.Session{&a, &b} {
			st, err := redislog.New(rc, redislog.Options{Prefix: prefix})
			check(err)
			defer st.Close()
			*s, err = fanout.NewSession("lat", fanout.WithLog(st.Log("lat")), fanout.WithPresence(false))
			check(err)
			defer (*s).Close()
			for (*s).Epoch() == "" {
				time.Sleep(time.Millisecond)
			}
		}
	} else {
		var err error
		a, err = fanout.NewSession("lat", fanout.WithPresence(false))
		check(err)
		defer a.Close()
		b = a
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	total := int(latDur.Seconds() * float64(*latRate))
	var mu sync.Mutex
	lat := make([]time.Duration, 0, total)
	got := make(chan struct{}, total)
	c, err := client.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), client.WithHandler(func(ev client.Event) {
		ns, err := strconv.ParseInt(strings.Trim(string(ev.Data), `"`), 10, 64)
		if err != nil {
			return
		}
		mu.Lock()
		lat = append(lat, time.Since(time.Unix(0, ns)))
		mu.Unlock()
		got <- struct{}{}
	}))
	check(err)
	defer c.Close()
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(*latRate))
		time.Sleep(time.Until(due))
		// The intended send time: a publish that is late counts as latency.
		_, err := b.Publish(context.Background(), []byte(`"`+strconv.FormatInt(due.UnixNano(), 10)+`"`))
		check(err)
	}
	for range total {
		<-got
	}
	return lat
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Round(10 * time.Microsecond)
}

func cleanup(rc rueidis.Client, prefix string) {
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := rc.Do(ctx, rc.B().Scan().Cursor(cursor).Match("{"+prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return
		}
		if len(e.Elements) > 0 {
			_ = rc.Do(ctx, rc.B().Del().Key(e.Elements...).Build()).Error()
		}
		if e.Cursor == 0 {
			return
		}
		cursor = e.Cursor
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "redisbench:", err)
		os.Exit(1)
	}
}
