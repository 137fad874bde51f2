// Package health answers liveness and readiness checks for a process that
// serves fanout sessions, with the standard library alone: mount
// Checker.Live at /healthz and Checker.Ready at /readyz.
//
// Liveness answers 200 while the process serves HTTP. Readiness answers
// 200 with a JSON report while every session accepts connections, and 503
// with the same report once the process drains (Checker.Drain) or a
// session's Shutdown has begun, or while a session on a shared log has not
// yet synced with it. To have a load balancer move new clients elsewhere
// before this node's clients are closed with 1001, call Drain when the
// process is told to stop, wait for the balancer to see the 503 (its check
// interval times its failure threshold), then shut the sessions down
// (examples/collab does, with its -drain flag).
//
// A shared log that cannot be reached does not make a node unready: every
// node shares it, so all of them would leave the balancer at once, and
// connected clients keep being served while it is away. The report shows
// it (log.reachable, log.lag); alert on it from the metrics instead.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-go/fanout"
)

// A Source is what readiness reports on: a *fanout.Session, or anything
// that sums up several (a hub).
type Source interface {
	Health(ctx context.Context) fanout.Health
}

// Checker answers liveness and readiness for the sources added to it. Its
// methods are safe for concurrent use.
type Checker struct {
	start    time.Time
	timeout  time.Duration
	draining atomic.Bool

	mu      sync.Mutex
	sources []Source
}

// New returns a Checker reporting on sources; its uptime counts from now.
func New(sources ...Source) *Checker {
	return &Checker{start: time.Now(), timeout: time.Second, sources: append([]Source(nil), sources...)}
}

// Add adds sources to report on.
func (c *Checker) Add(sources ...Source) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sources = append(c.sources, sources...)
}

// Drain makes readiness answer 503 from now on; liveness is unchanged.
func (c *Checker) Drain() { c.draining.Store(true) }

// Report is readiness's answer.
type Report struct {
	Status        string     `json:"status"` // "ready", "draining", "shutting down" or "not ready"
	UptimeSeconds float64    `json:"uptime_seconds"`
	Sessions      int        `json:"sessions"`
	Connections   int        `json:"connections"`
	Goroutines    int        `json:"goroutines"`
	Memory        Memory     `json:"memory"`
	Log           *LogReport `json:"log,omitempty"` // when a source is on a shared log
	Checked       time.Time  `json:"checked"`
}

// Memory is the process's memory, in bytes.
type Memory struct {
	Heap int64 `json:"heap_bytes"` // live and not yet swept heap objects
	RSS  int64 `json:"rss_bytes"`  // resident set size; 0 where the system does not tell
}

// LogReport sums up the shared logs of the sources.
type LogReport struct {
	Reachable bool   `json:"reachable"`       // every source's log answered
	Error     string `json:"error,omitempty"` // the first error of one that did not
	MaxLag    uint64 `json:"max_lag"`         // the largest tail lag, in events (fanout.LogHealth.Lag)
}

// Ready reports, 200 when ready and 503 otherwise.
func (c *Checker) Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.timeout)
		defer cancel()
		rep := c.Check(ctx)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if rep.Status != "ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// Live answers 200 "ok" to every request.
func (c *Checker) Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Check builds the report readiness answers with.
func (c *Checker) Check(ctx context.Context) Report {
	c.mu.Lock()
	sources := append([]Source(nil), c.sources...)
	c.mu.Unlock()
	rep := Report{
		Status:        "ready",
		UptimeSeconds: time.Since(c.start).Seconds(),
		Goroutines:    runtime.NumGoroutine(),
		Memory:        Memory{Heap: heapBytes(), RSS: rssBytes()},
		Checked:       time.Now().UTC(),
	}
	notReady, shutting := false, false
	for _, src := range sources {
		h := src.Health(ctx)
		rep.Sessions += h.Sessions
		rep.Connections += h.Connections
		shutting = shutting || h.ShuttingDown
		notReady = notReady || !h.Ready
		if h.Log == nil {
			continue
		}
		if rep.Log == nil {
			rep.Log = &LogReport{Reachable: true}
		}
		if !h.Log.Reachable {
			if rep.Log.Reachable {
				rep.Log.Error = h.Log.Error
			}
			rep.Log.Reachable = false
		}
		rep.Log.MaxLag = max(rep.Log.MaxLag, h.Log.Lag)
	}
	switch {
	case c.draining.Load():
		rep.Status = "draining"
	case shutting:
		rep.Status = "shutting down"
	case notReady:
		rep.Status = "not ready"
	}
	return rep
}

// heapBytes is the bytes in heap objects, from runtime/metrics, which,
// unlike runtime.ReadMemStats, does not stop the world.
func heapBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// rssBytes is the resident set size from /proc/self/statm on Linux, 0
// elsewhere.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
