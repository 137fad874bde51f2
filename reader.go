package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/fanout-go/fanout/internal/wire"
)

// maxRefusals is how many rate-limited publishes a connection may send
// within refusalWindow before it is closed with 1008: a client that backs
// off never gets near it, a flood at any steady rate does.
const (
	maxRefusals   = 100
	refusalWindow = time.Second
)

// reader is the state of a connection's reader goroutine.
type reader struct {
	c            *Conn
	publish      *rate.Limiter // client publishes
	inbound      *rate.Limiter // every client message
	refusals     int           // rate-limited publishes since refusalsFrom
	refusalsFrom time.Time
}

// readLoop reads client frames until the connection closes. After a close
// was requested it keeps reading, discarding, so the close handshake can
// complete.
func (c *Conn) readLoop() {
	cfg := &c.s.cfg
	r := reader{
		c:       c,
		publish: rate.NewLimiter(rate.Limit(cfg.publishRate), cfg.publishBurst),
		inbound: c.guard.inbound, // control frames count against it too
	}
	for {
		typ, frame, err := c.ws.Read(context.Background())
		if err != nil {
			if ce := c.guard.broken.Load(); ce != nil {
				c.failGuard(ce)
				return
			}
			c.noteReadError(err)
			return
		}
		c.lastHeard.Store(c.s.now())
		if c.isClosing() {
			continue
		}
		if typ != websocket.MessageText {
			c.requestClose(CloseProtocolError, "binary frames are not supported")
			continue
		}
		// RFC 6455 section 8.1: a text frame that is not UTF-8 fails the
		// connection, wherever the bytes are (an ignored field, an id).
		if !utf8.Valid(frame) {
			c.requestClose(CloseInvalidData, "text frame is not valid UTF-8")
			continue
		}
		for line := range wire.Lines(frame) {
			if !r.inbound.Allow() {
				c.requestClose(ClosePolicy, "message flood")
				break
			}
			if code, reason := r.handle(line); code != 0 {
				c.requestClose(code, reason)
				break
			}
		}
	}
}

// failGuard closes a connection whose frame the guard refused. The reader
// sends the close frame itself, as the library does for its own read
// errors: the stream behind the refused frame is never read, so the close
// handshake ends at once, the connection dropped after the close frame.
func (c *Conn) failGuard(ce *CloseError) {
	c.noteClose(ce.Code, ce.Reason)
	closeWithin(c.ws, c.netConn, ce.Code, ce.Reason, c.s.cfg.writeTimeout)
}

// handle processes one client message and returns a close code and reason
// when the connection must close.
func (r *reader) handle(line []byte) (CloseCode, string) {
	m, err := wire.DecodeClient(line)
	if err != nil {
		return CloseProtocolError, closeReason(err)
	}
	c := r.c
	switch m.Type {
	case wire.TypePublish:
		return r.handlePublish(m)
	case wire.TypeAck:
		if m.Seq > c.sent.Load() {
			return CloseProtocolError, "ack beyond what was sent"
		}
		storeMax(&c.acked, m.Seq)
		if c.user != nil {
			storeMax(&c.user.acked, m.Seq)
		}
	}
	return 0, ""
}

func (r *reader) handlePublish(m wire.ClientMessage) (CloseCode, string) {
	c := r.c
	s := c.s
	// A retry of a committed publish is answered before anything else: it
	// costs no rate token and the hook is not asked again, so a client
	// resending after a reconnect always gets its original seq back.
	if seq, ok := s.committed(c.identity.User, m.ID); ok {
		s.noteDeduplicated()
		c.answer(wire.AppendAck(nil, m.ID, seq))
		return 0, ""
	}
	if now := time.Now(); !r.publish.AllowN(now, 1) {
		if now.Sub(r.refusalsFrom) > refusalWindow {
			r.refusals, r.refusalsFrom = 0, now
		}
		if r.refusals++; r.refusals > maxRefusals {
			return ClosePolicy, "publish flood"
		}
		s.noteRefused(wire.CodeRateLimited)
		c.answer(wire.AppendError(nil, wire.CodeRateLimited, "publish rate exceeded", m.ID))
		return 0, ""
	}
	data := m.Data
	if s.cfg.validate != nil {
		out, err, panicked := r.validate(data)
		if panicked {
			return CloseInternalError, "internal error"
		}
		if err != nil {
			code := wire.CodeInvalid
			if errors.Is(err, ErrForbidden) {
				code = wire.CodeForbidden
			}
			s.noteRefused(code)
			c.answer(wire.AppendError(nil, code, err.Error(), m.ID))
			return 0, ""
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			s.cfg.logger.Error("fanout: validation hook returned invalid JSON", "session", s.name)
			s.noteRefused(wire.CodeInvalid)
			c.answer(wire.AppendError(nil, wire.CodeInvalid, "publish could not be processed", m.ID))
			return 0, ""
		}
		data = wire.Compact(out)
	}
	if int64(len(data)) > s.cfg.maxMessageSize {
		s.noteRefused(wire.CodeTooLarge)
		c.answer(wire.AppendError(nil, wire.CodeTooLarge,
			fmt.Sprintf("event data is %d bytes, limit %d", len(data), s.cfg.maxMessageSize), m.ID))
		return 0, ""
	}
	// The answer to a committed publish is sent even if the connection
	// starts closing meanwhile; once it is closing, nothing is committed.
	if !c.beginPublish() {
		return 0, ""
	}
	var answer []byte
	seq, err := s.publishFrom(c.ctx, c.identity.User, m.ID, data)
	switch {
	case err == nil:
		answer = wire.AppendAck(nil, m.ID, seq)
	case errors.Is(err, ErrUnavailable):
		s.noteRefused(wire.CodeUnavailable)
		answer = wire.AppendError(nil, wire.CodeUnavailable, "the log cannot commit now; retry", m.ID)
	}
	c.endPublish(answer)
	return 0, ""
}

// validate runs the host's hook. A panic in it is contained to this
// connection, which is closed with 1011, and logged.
func (r *reader) validate(data []byte) (out json.RawMessage, err error, panicked bool) {
	c := r.c
	defer func() {
		if p := recover(); p != nil {
			c.s.cfg.logger.Error("fanout: validation hook panicked", "session", c.s.name, "conn", c.id, "panic", p)
			panicked = true
		}
	}()
	out, err = c.s.cfg.validate(c.ctx, c, json.RawMessage(data))
	return out, err, false
}

// maxReasonLen fits a close reason into a close frame (125 bytes less the
// code).
const maxReasonLen = 120

// closeReason fits an error into a close frame's reason.
func closeReason(err error) string { return cutReason(err.Error()) }

// cutReason cuts s to maxReasonLen bytes on a character boundary, since a
// close reason must be valid UTF-8.
func cutReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	s = s[:maxReasonLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// noteReadError records the close reason the reader saw.
func (c *Conn) noteReadError(err error) {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.noteClose(CloseTooBig, "message too big")
	case websocket.CloseStatus(err) != -1:
		c.noteClose(CloseCode(websocket.CloseStatus(err)), "closed by client")
	default:
		c.noteClose(CloseAbnormal, "connection lost")
	}
}
