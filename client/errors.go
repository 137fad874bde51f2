package client

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrClosed is what Err returns, and what pending and later calls to Publish
// fail with, after Close.
var ErrClosed = errors.New("fanout/client: closed")

// ErrInvalidOption is wrapped by Dial's error for a bad option value.
var ErrInvalidOption = errors.New("fanout/client: invalid option")

// errGap reports an event whose seq skips ahead of the last processed one.
// The server never leaves gaps, so the connection is treated as broken.
var errGap = errors.New("fanout/client: sequence gap")

// PublishError is a publish the server refused for good with an error
// message: Code "invalid", "forbidden" or "too_large". Publish also returns
// Code "too_large" without sending anything when the message exceeds
// WithMaxMessageSize. A "rate_limited" refusal is not an error: the client
// sends the publish again after a pause (see Publish).
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
