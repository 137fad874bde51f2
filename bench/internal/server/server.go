// Package server runs one server under test with a small control endpoint
// beside its WebSocket endpoint: the load process asks it for its
// resource figures and tells it to publish at a given rate.
package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fanout-go/fanout/bench/internal/peer"
)

// Stats are a server process's figures at one moment.
type Stats struct {
	Conns      int    `json:"conns"`      // connections ready to receive
	NextSeq    uint64 `json:"next_seq"`   // seq of the next payload to be published
	Goroutines int    `json:"goroutines"` // runtime.NumGoroutine
	HeapInuse  uint64 `json:"heap_inuse"` // bytes
	StackInuse uint64 `json:"stack_inuse"`
	Mallocs    uint64 `json:"mallocs"` // cumulative heap allocations
	RSS        uint64 `json:"rss"`     // resident set size, bytes
	CPU        int64  `json:"cpu_ns"`  // user+system CPU time of the process
	GOMAXPROCS int    `json:"gomaxprocs"`
	Offset     uint64 `json:"offset"` // stream position, where there is replay
	Epoch      string `json:"epoch"`
	Replay     bool   `json:"replay"`
}

// RunResult is what one publishing run did.
type RunResult struct {
	First     uint64        `json:"first"` // seq of the first payload published
	Last      uint64        `json:"last"`
	Published int           `json:"published"`
	Errors    int           `json:"errors"`
	MaxLag    time.Duration `json:"max_lag"` // how late the publisher started a publish, at worst
	Elapsed   time.Duration `json:"elapsed"`
	Aborted   bool          `json:"aborted"` // the publisher fell too far behind and stopped
}

// Control serves a server under test and its control endpoint.
type Control struct {
	srv     peer.Server
	mux     *http.ServeMux
	profile string // CPU profiles go to <profile>-<name>.prof, if asked for
	quit    chan struct{}

	mu   sync.Mutex // one publishing run at a time
	next uint64

	profMu   sync.Mutex
	profFile *os.File
}

// New wraps srv: its WebSocket endpoint at /ws, control under /ctl/.
// profile is the path prefix of the CPU profiles the control endpoint
// starts and stops (POST /ctl/profile?on=1&name=N writes <profile>-N.prof);
// empty refuses them.
func New(srv peer.Server, profile string) *Control {
	c := &Control{srv: srv, mux: http.NewServeMux(), profile: profile, quit: make(chan struct{}), next: 1}
	c.mux.Handle("/ws", srv)
	c.mux.HandleFunc("GET /ctl/stats", c.stats)
	c.mux.HandleFunc("POST /ctl/run", c.run)
	c.mux.HandleFunc("POST /ctl/profile", c.profileCtl)
	c.mux.HandleFunc("POST /ctl/quit", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		select {
		case <-c.quit:
		default:
			close(c.quit)
		}
	})
	return c
}

func (c *Control) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// Quit is closed when the control endpoint is told to stop.
func (c *Control) Quit() <-chan struct{} { return c.quit }

func (c *Control) stats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("settle") != "" {
		// Idle figures: collect garbage and return free pages to the
		// system, so RSS shows what is live.
		runtime.GC()
		debug.FreeOSMemory()
	}
	c.mu.Lock()
	next := c.next
	c.mu.Unlock()
	writeJSON(w, c.Snapshot(next))
}

// Snapshot reads the process's figures.
func (c *Control) Snapshot(next uint64) Stats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := Stats{
		Conns:      c.srv.Conns(),
		NextSeq:    next,
		Goroutines: runtime.NumGoroutine(),
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Mallocs:    ms.Mallocs,
		RSS:        rss(),
		CPU:        cpuTime(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	if pos, ok := c.srv.Position(); ok {
		st.Offset, st.Epoch, st.Replay = pos.Offset, pos.Epoch, true
	}
	return st
}

// run publishes count payloads of size bytes at rate per second (0: as
// fast as the server takes them), open loop: payload i is due at
// start + i/rate and carries that intended time, however late the
// publisher gets to it.
func (c *Control) run(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rate, err1 := strconv.ParseFloat(q.Get("rate"), 64)
	count, err2 := strconv.Atoi(q.Get("count"))
	size, err3 := strconv.Atoi(q.Get("size"))
	if err1 != nil || err2 != nil || err3 != nil || rate < 0 || count < 1 || size < 1 {
		http.Error(w, "rate, count and size are required", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	writeJSON(w, c.publish(rate, count, size))
}

func (c *Control) publish(rate float64, count, size int) RunResult {
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	// A run that falls this far behind its schedule is hopeless; stop it
	// rather than publish for minutes.
	limit := time.Duration(count)*interval + 30*time.Second
	res := RunResult{First: c.next}
	start := time.Now().Add(time.Millisecond)
	for i := range count {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		res.MaxLag = max(res.MaxLag, time.Since(due))
		if err := c.srv.Publish(Payload(due.UnixNano(), c.next, size)); err != nil {
			res.Errors++
		}
		res.Last = c.next
		c.next++
		res.Published++
		if time.Since(start) > limit {
			res.Aborted = true
			break
		}
	}
	res.Elapsed = time.Since(start)
	return res
}

// Payload returns a JSON payload of exactly size bytes (at least about
// 50) carrying its intended send time and seq:
// {"bt":<unix ns>,"bs":<seq>,"p":"xxx…"}.
func Payload(due int64, seq uint64, size int) []byte {
	b := make([]byte, 0, max(size, 64))
	b = append(b, `{"bt":`...)
	b = strconv.AppendInt(b, due, 10)
	b = append(b, `,"bs":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"p":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

func (c *Control) profileCtl(w http.ResponseWriter, r *http.Request) {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	switch on := r.URL.Query().Get("on"); {
	case c.profile == "":
		http.Error(w, "no profile path given", http.StatusConflict)
	case on == "1" && c.profFile == nil:
		f, err := os.Create(c.profile + "-" + filepath.Base(r.URL.Query().Get("name")) + ".prof")
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c.profFile = f
		w.WriteHeader(http.StatusNoContent)
	case on == "0" && c.profFile != nil:
		pprof.StopCPUProfile()
		err := c.profFile.Close()
		c.profFile = nil
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "profile already in that state", http.StatusConflict)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// cpuTime is the process's user and system CPU time.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// CPUTime is the calling process's user and system CPU time.
func CPUTime() time.Duration { return time.Duration(cpuTime()) }

// rss reads the resident set size from /proc/self/status.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			_, _ = fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
