package client

import "fmt"

// item is one entry of the delivery queue: an event, or the reset or
// snapshot that precedes the events after a fresh start or a refused
// resume.
type item struct {
	ev       Event // for a reset, ev.Seq and ev.Epoch are the head to resync to; for a snapshot, its seq, epoch and data
	cn       *conn // the connection the event came on, to ack it there; nil for a reset or snapshot
	reset    bool
	snapshot bool
}

// The reader (the run goroutine) and the delivery goroutine meet at a
// bounded queue, so that the reader keeps taking acks and pings while the
// application is busy: a handler that publishes and waits for the ack must
// not stop the ack from being read. When the queue is full, the reader
// discards further events of that connection (still reading everything
// else); once the application has caught up, the connection is dropped and
// the client resumes after the last event it queued.

// deliver hands queued items to the application, one at a time and in
// order, until the client is closed, or has stopped and the queue is empty.
func (c *Client) deliver() {
	defer close(c.deliverDone)
	if c.events != nil {
		defer close(c.events)
	}
	for {
		it, ok := c.next()
		if !ok {
			return
		}
		switch {
		case it.snapshot:
			c.cfg.onSnapshot(Snapshot{Seq: it.ev.Seq, Epoch: it.ev.Epoch, Data: it.ev.Data})
		case it.reset:
			c.log.Warn("fanout/client: resume refused, resetting to head", "head", it.ev.Seq, "epoch", it.ev.Epoch)
			if c.cfg.onReset != nil {
				c.cfg.onReset(it.ev.Seq, it.ev.Epoch)
			}
		case c.cfg.handler != nil:
			c.cfg.handler(it.ev)
		default:
			select {
			case c.events <- it.ev:
			case <-c.ctx.Done():
				return
			}
		}
		c.mu.Lock()
		c.seq, c.epoch = it.ev.Seq, it.ev.Epoch
		c.mu.Unlock()
		if it.cn != nil {
			it.cn.ackable.Store(it.ev.Seq)
			kick(it.cn.ackKick)
		}
	}
}

// next takes the next item, waiting for one. It reports false once the
// client is closed, or stopped with nothing left to deliver.
func (c *Client) next() (item, bool) {
	for {
		if c.ctx.Err() != nil {
			return item{}, false
		}
		c.mu.Lock()
		if len(c.queue) > 0 {
			it := c.queue[0]
			c.queue[0] = item{}
			c.queue = c.queue[1:]
			var resume *conn
			if c.overflow != nil && len(c.queue) <= c.cfg.buffer/2 {
				resume, c.overflow = c.overflow, nil
			}
			c.mu.Unlock()
			if resume != nil {
				resume.resume()
			}
			return it, true
		}
		c.queue = nil // let a burst's backing array go
		done := c.inputDone
		c.mu.Unlock()
		if done {
			return item{}, false
		}
		select {
		case <-c.qKick:
		case <-c.ctx.Done():
		}
	}
}

// enqueue queues a frame's events from cn: duplicates are dropped, a gap is
// an error, and events past the queue's capacity are discarded until cn is
// replaced by a resumed connection.
func (c *Client) enqueue(cn *conn, msgs []message) error {
	c.mu.Lock()
	defer kick(c.qKick)
	defer c.mu.Unlock()
	for i := range msgs {
		m := &msgs[i]
		if m.Type != "event" || c.overflow == cn {
			continue
		}
		switch {
		case m.Seq <= c.rseq:
			c.duplicates.Add(1)
			continue
		case m.Seq > c.rseq+1:
			return fmt.Errorf("%w: expected seq %d, got %d", errGap, c.rseq+1, m.Seq)
		case len(c.queue) >= c.cfg.buffer:
			c.overflow = cn
			c.log.Debug("fanout/client: buffer full, resuming once the application catches up", "after", c.rseq)
			continue
		}
		c.queue = append(c.queue, item{
			ev: Event{Seq: m.Seq, Epoch: c.repoch, Data: m.Data, From: m.From, ID: m.ID},
			cn: cn,
		})
		c.rseq = m.Seq
	}
	return nil
}
