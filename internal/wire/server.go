package wire

import "strconv"

// Message types of the protocol.
const (
	TypeWelcome = "welcome"
	TypeEvent   = "event"
	TypeAck     = "ack"
	TypeError   = "error"
	TypeJoin    = "join"
	TypeLeave   = "leave"
	TypePing    = "ping"
	TypePublish = "publish"
	TypePong    = "pong"
)

// Error codes carried by an error message.
const (
	CodeInvalid     = "invalid"
	CodeForbidden   = "forbidden"
	CodeRateLimited = "rate_limited"
	CodeTooLarge    = "too_large"
	CodeUnavailable = "unavailable"
)

// Ping is the encoded heartbeat message.
var Ping = []byte(`{"type":"ping"}`)

// AppendEvent appends an event message. data must be compact JSON (no raw
// newline). from and id are written only when id is not empty, that is for
// events a client published.
func AppendEvent(dst []byte, seq uint64, data []byte, from, id string) []byte {
	dst = append(dst, `{"type":"event","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	if id != "" {
		dst = append(dst, `,"from":`...)
		dst = AppendString(dst, from)
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, id)
	}
	return append(dst, '}')
}

// AppendAck appends the answer to a committed publish.
func AppendAck(dst []byte, id string, seq uint64) []byte {
	dst = append(dst, `{"type":"ack","id":`...)
	dst = AppendString(dst, id)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}')
}

// AppendError appends an error message; id is omitted when empty.
func AppendError(dst []byte, code, message, id string) []byte {
	dst = append(dst, `{"type":"error","code":`...)
	dst = AppendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, message)
	if id != "" {
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, id)
	}
	return append(dst, '}')
}

// AppendPresence appends a join or leave message.
func AppendPresence(dst []byte, typ, user, conn string) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendString(dst, typ)
	dst = append(dst, `,"user":`...)
	dst = AppendString(dst, user)
	dst = append(dst, `,"conn":`...)
	dst = AppendString(dst, conn)
	return append(dst, '}')
}

// Member is one entry of a welcome's presence list.
type Member struct {
	User string
	Conn string
}

// Welcome is the first message on every connection.
type Welcome struct {
	Session     string
	Epoch       string
	Head        uint64
	Oldest      uint64
	Conn        string
	User        string
	HeartbeatMS int64
	Resumed     bool
	Snapshot    bool   // a snapshot message follows the welcome
	ByIdentity  bool   // resumed from the identity's position: After is sent
	After       uint64 // with ByIdentity: delivery resumes after this seq
	Presence    []Member
	Present     int // connections present; more than len(Presence) when the list was cut
}

// AppendWelcome appends w.
func AppendWelcome(dst []byte, w *Welcome) []byte {
	dst = append(dst, `{"type":"welcome","session":`...)
	dst = AppendString(dst, w.Session)
	dst = append(dst, `,"epoch":`...)
	dst = AppendString(dst, w.Epoch)
	dst = append(dst, `,"head":`...)
	dst = strconv.AppendUint(dst, w.Head, 10)
	dst = append(dst, `,"oldest":`...)
	dst = strconv.AppendUint(dst, w.Oldest, 10)
	dst = append(dst, `,"conn":`...)
	dst = AppendString(dst, w.Conn)
	dst = append(dst, `,"user":`...)
	dst = AppendString(dst, w.User)
	dst = append(dst, `,"heartbeat":`...)
	dst = strconv.AppendInt(dst, w.HeartbeatMS, 10)
	dst = append(dst, `,"resumed":`...)
	dst = strconv.AppendBool(dst, w.Resumed)
	dst = append(dst, `,"present":`...)
	dst = strconv.AppendInt(dst, int64(w.Present), 10)
	if w.Snapshot {
		dst = append(dst, `,"snapshot":true`...)
	}
	if w.ByIdentity {
		dst = append(dst, `,"after":`...)
		dst = strconv.AppendUint(dst, w.After, 10)
	}
	dst = append(dst, `,"presence":[`...)
	for i, m := range w.Presence {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"user":`...)
		dst = AppendString(dst, m.User)
		dst = append(dst, `,"conn":`...)
		dst = AppendString(dst, m.Conn)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}
