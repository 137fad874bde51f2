/**
 * Close codes of the fanout protocol (PROTOCOL.md, "Close codes"), and the
 * WebSocket codes a browser reports for connections that end without one.
 */
export const CloseCode = {
  /** The server (or the host) ended the connection: the client stops. */
  Normal: 1000,
  /** The server is shutting down: the client reconnects and resumes. */
  GoingAway: 1001,
  /** The connection ended without a close frame, or could not be made: reconnect. */
  Abnormal: 1006,
  /** Flooding, or the host ended the connection (access revoked): the client stops. */
  Policy: 1008,
  /** A frame larger than the server's maximum message size: the client stops. */
  TooBig: 1009,
  /** The host's hook failed on this connection's input: reconnect with backoff. */
  Internal: 1011,
  /** Protocol error (a client bug): the client stops. */
  Protocol: 4000,
  /** The connection fell out of the server's history window: reconnect and resume. */
  SlowConsumer: 4001,
  /** The server heard nothing after its ping: reconnect and resume. */
  HeartbeatTimeout: 4002,
} as const;

/** Close codes after which reconnecting cannot help. */
export const terminalCodes: readonly number[] = [1000, 1002, 1003, 1007, 1008, 1009, 4000];

/** Base class of every error the client reports. */
export class FanoutError extends Error {
  /** A close code (number) or a protocol error code such as "invalid" (string). */
  readonly code: number | string;
  constructor(message: string, code: number | string) {
    super(message);
    this.name = 'FanoutError';
    this.code = code;
  }
}

/**
 * The server closed the connection with a code after which the client stops
 * (1000, 1008, 1009, 4000, and the WebSocket protocol errors). Pending
 * publishes fail with it.
 */
export class CloseError extends FanoutError {
  declare readonly code: number;
  /** The close frame's reason, often empty. */
  readonly reason: string;
  constructor(code: number, reason: string) {
    super(`fanout: connection closed for good: ${code}${reason ? ' ' + reason : ''}`, code);
    this.name = 'CloseError';
    this.reason = reason;
  }
}

/**
 * The server refused a publish for good: code "invalid" or "forbidden" (the
 * host's validation), or "too_large" (also raised before sending when the
 * message exceeds maxMessageSize). "rate_limited" is never an error: the
 * client sends the publish again after a pause.
 */
export class PublishError extends FanoutError {
  declare readonly code: string;
  constructor(code: string, message: string) {
    super(`fanout: publish refused: ${code}${message ? ': ' + message : ''}`, code);
    this.name = 'PublishError';
  }
}

/** close() was called: pending and later publishes fail with it. */
export class ClosedError extends FanoutError {
  constructor() {
    super('fanout: client closed', 'closed');
    this.name = 'ClosedError';
  }
}
