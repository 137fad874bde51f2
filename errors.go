package fanout

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrClosed is returned by Publish after Shutdown or Close.
	ErrClosed = errors.New("fanout: session closed")
	// ErrInvalidJSON is returned by Publish for data that is not valid JSON.
	ErrInvalidJSON = errors.New("fanout: data is not valid JSON")
	// ErrTooLarge is returned by Publish for data larger than the maximum
	// message size.
	ErrTooLarge = errors.New("fanout: data exceeds the maximum message size")
	// ErrInvalidOption is wrapped by NewSession's errors for bad options.
	ErrInvalidOption = errors.New("fanout: invalid option")
	// ErrForbidden may be wrapped by a validation hook's error to answer the
	// publisher with code forbidden instead of invalid, and by the
	// authentication hook's error to answer 403 instead of 401.
	ErrForbidden = errors.New("fanout: forbidden")
)

// StatusError is an error the authentication hook (WithAuthenticate) may
// return, or wrap, to refuse a request with a 4xx status of its choice,
// for example 404 for a document that does not exist or 429 for a user
// over a connection quota. The client gets the status and its standard
// text; Err is for the host's own logs and is not sent.
type StatusError struct {
	Code int   // an HTTP status in 400-499; any other answers 401
	Err  error // the cause, or nil
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("fanout: refused with %d %s", e.Code, http.StatusText(e.Code))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *StatusError) Unwrap() error { return e.Err }

// authStatus is the HTTP status that answers the authentication hook's
// error: the 4xx code of a StatusError in its chain, else 403 if it wraps
// ErrForbidden, else 401.
func authStatus(err error) int {
	var se *StatusError
	switch {
	case errors.As(err, &se) && se.Code >= 400 && se.Code <= 499:
		return se.Code
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// CloseCode is a WebSocket close status code used by the protocol.
type CloseCode int

// The close codes of protocol v1 (PROTOCOL.md).
const (
	CloseNormal           CloseCode = 1000 // normal closure
	CloseGoingAway        CloseCode = 1001 // server shutting down: reconnect and resume
	CloseAbnormal         CloseCode = 1006 // the connection dropped without a close frame
	CloseInvalidData      CloseCode = 1007 // invalid UTF-8 in a text frame or a close reason
	ClosePolicy           CloseCode = 1008 // sustained abuse
	CloseTooBig           CloseCode = 1009 // a frame exceeded the maximum message size
	CloseInternalError    CloseCode = 1011 // a host hook failed on this connection, or the host closed it so
	CloseProtocolError    CloseCode = 4000 // malformed or unexpected message
	CloseSlowConsumer     CloseCode = 4001 // fell behind the history window or a write timed out
	CloseHeartbeatTimeout CloseCode = 4002 // no answer to a heartbeat in time
)

// CloseError says why a connection closed.
type CloseError struct {
	Code   CloseCode
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("fanout: connection closed with %d: %s", int(e.Code), e.Reason)
}

// CloseCodeOf returns the code of the CloseError in err's chain, or 0.
func CloseCodeOf(err error) CloseCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
