package fanout

import (
	"sync"
	"time"
)

// heartbeat is a connection's ping schedule, run by one timer; no
// goroutine waits for it.
type heartbeat struct {
	mu       sync.Mutex
	timer    *time.Timer
	stopped  bool  // the connection is over: the timer must not be reset
	nextPing int64 // Session.now when the next ping is due
	pingAt   int64 // Session.now of the oldest unanswered ping, 0 if none
}

func (h *heartbeat) start(c *Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.nextPing = c.s.now() + int64(c.s.cfg.heartbeat)
	h.timer = time.AfterFunc(c.s.cfg.heartbeat, c.onHeartbeat)
}

func (h *heartbeat) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	if h.timer != nil {
		h.timer.Stop()
	}
}

// onHeartbeat runs on the connection's heartbeat timer. Every interval it
// has the writer send a ping; timeout after the oldest unanswered ping, a
// client that has sent nothing since is closed with 4002. Any message
// counts as an answer, so a busy client never needs to answer pings on
// time. Pings keep to the interval whatever the timeout, so the interval
// announced in the welcome is the one clients see.
func (c *Conn) onHeartbeat() {
	interval, timeout := int64(c.s.cfg.heartbeat), int64(c.s.cfg.heartbeatTimeout)
	now := c.s.now()
	heard := c.lastHeard.Load()
	h := &c.hb
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return
	}
	if h.pingAt != 0 && now-h.pingAt >= timeout {
		if heard < h.pingAt {
			h.mu.Unlock()
			c.s.noteHeartbeatTimeout()
			c.requestClose(CloseHeartbeatTimeout, "heartbeat timeout")
			return
		}
		h.pingAt = 0
	}
	ping := now >= h.nextPing
	if ping {
		h.nextPing = now + interval
		if h.pingAt == 0 || heard >= h.pingAt {
			h.pingAt = now
		}
	}
	next := h.nextPing
	if h.pingAt != 0 {
		next = min(next, h.pingAt+timeout)
	}
	h.timer.Reset(time.Duration(next - now))
	h.mu.Unlock()
	if ping {
		c.queuePing()
	}
}
