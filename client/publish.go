package client

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"time"
)

// pub is a publish waiting for the server's answer.
type pub struct {
	id     string
	msg    []byte // the encoded publish message
	gen    uint64 // the connection it was sent on, unanswered; 0: never sent, or rate limited
	round  uint64 // the window round it was sent in (see sendWindow)
	elem   *list.Element
	result chan result // buffered: the answer never waits for the caller
}

type result struct {
	seq uint64
	err error
}

// Publish appends data (any JSON value) to the session's sequence and
// returns the seq the server assigned to it. The event is delivered to every
// client, this one included, with From and ID set.
//
// Publish waits for the server's ack. Publishes are sent in the order they
// were made, at most WithMaxInFlight at a time; the rest wait their turn. If
// the connection drops before the ack, the publish is sent again, with the
// same id, once the client has reconnected; the server recognizes the id and
// answers with the original seq, so the publish takes effect exactly once.
// A publish the server refuses as rate limited is sent again, with the same
// id, after a pause. Any other refusal is a *PublishError. If ctx ends
// first, Publish returns ctx.Err() and stops retrying, but a publish already
// sent may still take effect.
func (c *Client) Publish(ctx context.Context, data []byte) (uint64, error) {
	id := newID()
	msg, err := encodePublish(id, data)
	if err != nil {
		return 0, err
	}
	if int64(len(msg)) > c.cfg.maxMessageSize {
		return 0, &PublishError{
			Code:    CodeTooLarge,
			Message: fmt.Sprintf("message of %d bytes exceeds the maximum message size of %d", len(msg), c.cfg.maxMessageSize),
		}
	}
	p := &pub{id: id, msg: msg, result: make(chan result, 1)}
	c.mu.Lock()
	if c.stopped {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	p.elem = c.pending.PushBack(p)
	c.pubs[id] = p
	c.mu.Unlock()
	kick(c.pubKick)

	select {
	case r := <-p.result:
		return r.seq, r.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.pubs[id] == p {
		c.drop(p)
		if p.gen == c.gen {
			c.window.forget()
			kick(c.pubKick)
		}
	}
	c.mu.Unlock()
	select {
	case r := <-p.result: // answered while giving up
		return r.seq, r.err
	default:
		return 0, ctx.Err()
	}
}

// drop takes p out of the pending publishes. The caller holds c.mu.
func (c *Client) drop(p *pub) {
	c.pending.Remove(p.elem)
	delete(c.pubs, p.id)
}

// answer handles the server's ack or error for a publish sent on
// connection gen. A rate_limited or unavailable refusal leaves the publish
// pending, to be sent again, with its id, once the window's pause is over;
// any other answer settles it.
// Either way the window has room again, so the writer is woken.
func (c *Client) answer(gen uint64, m *message) {
	limited := m.Type == "error" && (m.Code == CodeRateLimited || m.Code == CodeUnavailable)
	c.mu.Lock()
	p := c.pubs[m.ID]
	if p == nil || p.gen != gen || gen != c.gen {
		// Abandoned by its caller, or not in flight here: nothing to do.
		c.mu.Unlock()
		return
	}
	if limited {
		c.window.refused(p.round, time.Now(), mrand.Float64())
		if m.Code == CodeRateLimited {
			p.gen = 0 // definitely not appended: not a resend when it goes again
			c.rateLimited.Add(1)
		} else {
			// Perhaps committed after all (the server timed out waiting
			// for its log): the retry, same id, gets the original seq.
			p.gen = ^uint64(0)
			c.unavailable.Add(1)
		}
		c.mu.Unlock()
		kick(c.pubKick)
		return
	}
	c.window.accepted()
	c.drop(p)
	c.mu.Unlock()
	kick(c.pubKick)
	if m.Type == "ack" {
		p.result <- result{seq: m.Seq}
	} else {
		p.result <- result{err: &PublishError{Code: m.Code, Message: m.Message}}
	}
}

// appendPublishes appends, in publish order, the publishes not in flight on
// connection gen, as many as its window lets go at now and the frame holds
// within the maximum message size. more reports that the frame is full with
// more to send; a non-zero wake, that the window is paused until then with
// publishes waiting.
func (c *Client) appendPublishes(buf []byte, gen uint64, now time.Time) (_ []byte, more bool, wake time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.pending.Front(); e != nil; e = e.Next() {
		p := e.Value.(*pub)
		if p.gen == gen {
			continue
		}
		if ok, until := c.window.wait(now); !ok {
			return buf, false, until
		}
		if len(buf) > 0 && int64(len(buf)+1+len(p.msg)) > c.cfg.maxMessageSize {
			return buf, true, time.Time{}
		}
		if p.gen != 0 {
			c.resent.Add(1)
		}
		p.gen = gen
		p.round = c.window.sent()
		buf = appendLine(buf)
		buf = append(buf, p.msg...)
	}
	return buf, false, time.Time{}
}

// newID returns a random publish id: 16 bytes, hex-encoded.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: see crypto/rand.Read
	return hex.EncodeToString(b[:])
}
