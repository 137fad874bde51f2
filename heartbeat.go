package fanout

import "time"

// onHeartbeat runs on the connection's heartbeat timer; no goroutine waits
// for it. Every interval it has the writer send a ping; timeout after the
// oldest unanswered ping, a client that has sent nothing since is closed
// with 4002. Any message counts as an answer, so a busy client never needs
// to answer pings on time. Pings keep to the interval whatever the timeout,
// so the interval announced in the welcome is the one clients see.
func (c *Conn) onHeartbeat() {
	interval, timeout := int64(c.s.cfg.heartbeat), int64(c.s.cfg.heartbeatTimeout)
	now := c.s.now()
	heard := c.lastHeard.Load()
	c.mu.Lock()
	if c.finished { // the timer must not outlive the connection
		c.mu.Unlock()
		return
	}
	if c.pingAt != 0 && now-c.pingAt >= timeout {
		if heard < c.pingAt {
			c.mu.Unlock()
			c.requestClose(CloseHeartbeatTimeout, "heartbeat timeout")
			return
		}
		c.pingAt = 0
	}
	ping := now >= c.nextPing
	if ping {
		c.nextPing = now + interval
		if c.pingAt == 0 || heard >= c.pingAt {
			c.pingAt = now
		}
	}
	next := c.nextPing
	if c.pingAt != 0 {
		next = min(next, c.pingAt+timeout)
	}
	c.heartbeat.Reset(time.Duration(next - now))
	c.mu.Unlock()
	if ping {
		c.pingDue.Store(true)
		c.notify()
	}
}
