package client

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// pub is a publish waiting for the server's answer.
type pub struct {
	id     string
	msg    []byte // the encoded publish message
	gen    uint64 // the connection it was last sent on; 0 = not sent yet
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
// Publish waits for the server's ack. If the connection drops first, the
// publish is sent again, with the same id, once the client has reconnected;
// the server recognizes the id and answers with the original seq, so the
// publish takes effect exactly once. A refusal is a *PublishError. If ctx
// ends first, Publish returns ctx.Err() and stops retrying, but a publish
// already sent may still take effect.
func (c *Client) Publish(ctx context.Context, data []byte) (uint64, error) {
	id := newID()
	msg, err := encodePublish(id, data)
	if err != nil {
		return 0, err
	}
	if int64(len(msg)) > c.cfg.maxMessageSize {
		return 0, &PublishError{
			Code:    "too_large",
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
		c.pending.Remove(p.elem)
		delete(c.pubs, id)
	}
	c.mu.Unlock()
	select {
	case r := <-p.result: // answered while giving up
		return r.seq, r.err
	default:
		return 0, ctx.Err()
	}
}

// settle hands the server's answer to the publish with the given id, if it
// is still waiting.
func (c *Client) settle(id string, r result) {
	c.mu.Lock()
	p := c.pubs[id]
	if p != nil {
		c.pending.Remove(p.elem)
		delete(c.pubs, id)
	}
	c.mu.Unlock()
	if p != nil {
		p.result <- r
	}
}

// appendPublishes appends, in publish order, the publishes not yet sent on
// connection gen, as long as the frame stays within the maximum message
// size. more reports that some did not fit.
func (c *Client) appendPublishes(buf []byte, gen uint64) (_ []byte, more bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.pending.Front(); e != nil; e = e.Next() {
		p := e.Value.(*pub)
		if p.gen == gen {
			continue
		}
		if len(buf) > 0 && int64(len(buf)+1+len(p.msg)) > c.cfg.maxMessageSize {
			return buf, true
		}
		if p.gen != 0 {
			c.resent.Add(1)
		}
		p.gen = gen
		buf = appendLine(buf)
		buf = append(buf, p.msg...)
	}
	return buf, false
}

// newID returns a random publish id: 16 bytes, hex-encoded.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: see crypto/rand.Read
	return hex.EncodeToString(b[:])
}
