package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/coder/websocket"

	"github.com/fanout-go/fanout"
)

// ErrClosed is what Err returns, and what pending and later calls to Publish
// fail with, after Close.
var ErrClosed = errors.New("fanout/client: closed")

// ErrInvalidOption is wrapped by Dial's error for a bad option value.
var ErrInvalidOption = errors.New("fanout/client: invalid option")

// errGap reports an event whose seq skips ahead of the last processed one.
// The server never leaves gaps, so the connection is treated as broken.
var errGap = errors.New("fanout/client: sequence gap")

// The codes of the server's error messages (PROTOCOL.md), as
// PublishError.Code holds them.
const (
	CodeInvalid   = "invalid"   // the host's validation hook refused the publish
	CodeForbidden = "forbidden" // the hook refused it with fanout.ErrForbidden
	CodeTooLarge  = "too_large" // the event is larger than the maximum message size
	// CodeRateLimited is a publish over the connection's rate: nothing was
	// appended, and the client sends it again after a pause, so Publish
	// never returns it.
	CodeRateLimited = "rate_limited"
	// CodeUnavailable is a publish the server could not commit to its
	// shared log (fanout.ErrUnavailable): nothing was acked, and the
	// client sends it again, with the same id, after a pause, so Publish
	// never returns it. If it was committed after all, the retry gets the
	// original seq.
	CodeUnavailable = "unavailable"
)

// PublishError is a publish the server refused for good with an error
// message: Code CodeInvalid, CodeForbidden or CodeTooLarge, or a code a
// newer server added. Publish also returns CodeTooLarge without sending
// anything when the message exceeds WithMaxMessageSize. A CodeRateLimited
// or CodeUnavailable refusal is not an error: the client sends the publish
// again after a pause (see Publish).
type PublishError struct {
	Code    string
	Message string
}

func (e *PublishError) Error() string {
	if e.Message == "" {
		return "fanout/client: publish refused: " + e.Code
	}
	return "fanout/client: publish refused: " + e.Code + ": " + e.Message
}

// HandshakeError is an HTTP answer other than 101 to the WebSocket upgrade:
// 401 (authentication refused), 403 (origin not allowed, or the host
// refused this user access), 429 (the host's quota), 400 (bad resume
// position), 503 (connection limit or shutting down), and so on. Dial returns
// it as is. In the background 5xx, 408 and 429 are retried with backoff; any
// other status stops the client, since asking again cannot help.
type HandshakeError struct {
	StatusCode int
	Body       string // the start of the response body, often the reason
	Err        error  // the underlying dial error
}

func (e *HandshakeError) Error() string {
	msg := fmt.Sprintf("fanout/client: handshake refused: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// retryable reports whether trying the handshake again may succeed.
func (e *HandshakeError) retryable() bool {
	c := e.StatusCode
	return c >= 500 || c == http.StatusRequestTimeout || c == http.StatusTooManyRequests
}

// stopError is what Err returns after the server closed the connection
// with a code that stops the client: it carries that code and reason as a
// *fanout.CloseError, so that fanout.CloseCodeOf reads it, and the
// WebSocket library's own error.
type stopError struct {
	close *fanout.CloseError
	err   error
}

func (e *stopError) Error() string { return "fanout/client: stopped: " + e.close.Error() }

func (e *stopError) Unwrap() []error { return []error{e.close, e.err} }

// stopped is the error that ends the client after err, the error a
// connection ended with.
func stopped(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &stopError{close: &fanout.CloseError{Code: fanout.CloseCode(ce.Code), Reason: ce.Reason}, err: err}
	}
	return fmt.Errorf("fanout/client: stopped: %w", err)
}
