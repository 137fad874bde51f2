package client

import (
	"context"
	"time"

	"github.com/coder/websocket"
)

// writer is the only goroutine that writes to a connection. It first sends
// the publishes still waiting for an ack, as many as the window allows, then,
// as they come, pongs, coalesced acks and publishes (new ones, ones the
// window has room for again, ones whose rate limit pause is over), packing
// whatever is due into one frame. On Close it sends a last ack and the close
// frame.
func (c *Client) writer(cn *conn) {
	defer close(cn.writerDone)
	w := frameWriter{c: c, cn: cn, pubs: true}
	var ackAlarm, pubAlarm alarm
	defer ackAlarm.stop()
	defer pubAlarm.stop()
	for {
		if err := w.flush(); err != nil {
			c.log.Debug("fanout/client: write failed", "err", err)
			cn.cancel()
			return
		}
		if !w.wake.IsZero() {
			pubAlarm.set(time.Until(w.wake))
			w.wake = time.Time{}
		}
		select {
		case <-c.ctx.Done():
			w.ackDue = true
			w.pubs = false
			_ = w.flush()
			c.closeConn(cn)
			return
		case <-cn.ctx.Done():
			return
		case <-cn.pongKick:
			w.pong = true
		case <-c.pubKick:
			w.pubs = true
		case <-pubAlarm.C:
			pubAlarm.C = nil
			w.pubs = true
		case <-cn.ackKick:
			if wait := c.cfg.ackInterval - time.Since(w.lastAck); wait <= 0 {
				w.ackDue = true
			} else if ackAlarm.C == nil {
				ackAlarm.set(wait)
			}
		case <-ackAlarm.C:
			ackAlarm.C = nil
			w.ackDue = true
		}
	}
}

// alarm is a reusable timer whose channel is nil, so that a select on it
// blocks, while it is not set.
type alarm struct {
	t *time.Timer
	C <-chan time.Time
}

// set makes the alarm fire after d, replacing any earlier setting.
func (a *alarm) set(d time.Duration) {
	if a.t == nil {
		a.t = time.NewTimer(d)
	} else {
		a.t.Reset(d) // since Go 1.23 no stale tick can follow a Reset
	}
	a.C = a.t.C
}

func (a *alarm) stop() {
	if a.t != nil {
		a.t.Stop()
	}
}

// closeConn sends the close frame and waits, for at most closeWait, for the
// server to answer before dropping the connection.
func (c *Client) closeConn(cn *conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cn.ws.Close(websocket.StatusNormalClosure, "")
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cn.cancel() // ends a read in progress, which closes the socket
		<-done
	}
}

// frameWriter holds what is due on one connection.
type frameWriter struct {
	c       *Client
	cn      *conn
	buf     []byte
	pong    bool
	ackDue  bool
	pubs    bool
	wake    time.Time // when the window's pause ends, with publishes waiting
	acked   uint64    // last ack sent on this connection
	lastAck time.Time
}

// flush writes everything due, in as few frames as the size limit allows.
func (w *frameWriter) flush() error {
	for {
		w.buf = w.buf[:0]
		select { // a ping that came meanwhile rides along
		case <-w.cn.pongKick:
			w.pong = true
		default:
		}
		if w.pong {
			w.buf = append(w.buf, pongMessage...)
			w.pong = false
		}
		if w.ackDue {
			w.ackDue = false
			if seq := w.cn.ackable.Load(); seq > w.acked {
				w.buf = appendLine(w.buf)
				w.buf = appendAck(w.buf, seq)
				w.acked = seq
				w.lastAck = time.Now()
			}
		}
		more := false
		if w.pubs {
			w.buf, more, w.wake = w.c.appendPublishes(w.buf, w.cn.gen, time.Now())
			w.pubs = more
		}
		if len(w.buf) == 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(w.cn.ctx, w.c.cfg.timeout)
		err := w.cn.ws.Write(ctx, websocket.MessageText, w.buf)
		cancel()
		if err != nil || !more {
			return err
		}
	}
}

// appendLine separates the next message from what buf already holds.
func appendLine(buf []byte) []byte {
	if len(buf) > 0 {
		buf = append(buf, '\n')
	}
	return buf
}
