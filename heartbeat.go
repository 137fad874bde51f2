package fanout

import "time"

// heartbeat schedules a connection's pings: every interval the writer sends
// a ping, then expects some message from the client within timeout. Any
// message counts, so a busy client never needs to answer pongs on time.
type heartbeat struct {
	interval, timeout time.Duration
	due               bool  // a ping should go out with the next frame
	pingAt            int64 // unix nanos of the last ping; 0 when none is outstanding
}

// tick handles the timer firing and re-arms it. It returns false when the
// client has been silent since the last ping for the whole timeout.
func (h *heartbeat) tick(t *time.Timer, lastHeard int64) bool {
	if h.pingAt != 0 {
		if lastHeard < h.pingAt {
			return false
		}
		h.pingAt = 0
		t.Reset(max(h.interval-h.timeout, time.Millisecond))
		return true
	}
	h.due = true
	h.pingAt = time.Now().UnixNano()
	t.Reset(h.timeout)
	return true
}
