package fanout

import "time"

// onHeartbeat runs on the connection's heartbeat timer; no goroutine waits
// for it. Every interval it has the writer send a ping, then expects some
// message from the client within the timeout. Any message counts, so a busy
// client never needs to answer pongs on time.
func (c *Conn) onHeartbeat() {
	cfg := &c.s.cfg
	if at := c.pingAt.Load(); at != 0 {
		if c.lastHeard.Load() < at {
			c.requestClose(CloseHeartbeatTimeout, "heartbeat timeout")
			return
		}
		c.pingAt.Store(0)
		c.heartbeat.Reset(max(cfg.heartbeat-cfg.heartbeatTimeout, time.Millisecond))
		return
	}
	c.pingAt.Store(time.Now().UnixNano())
	c.pingDue.Store(true)
	c.heartbeat.Reset(cfg.heartbeatTimeout)
	c.notify()
}
