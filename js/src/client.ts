import { CloseError, ClosedError, FanoutError, PublishError, terminalCodes } from './errors';

/** One event of the session's sequence, delivered once, in seq order. */
export interface FanoutEvent<T = unknown> {
  /** Position in the session's sequence, from 1. */
  seq: number;
  /** The epoch seq belongs to: a position is seq and epoch together. */
  epoch: string;
  /** The payload as published. */
  data: T;
  /** The publisher's identity as the server authenticated it; absent for server publishes. */
  from?: string;
  /** The publish id of a client publish; absent for server publishes. */
  id?: string;
}

/** What the server says when it cannot serve the position the client resumed from. */
export interface Reset {
  /** The session's head: delivery continues with head + 1. */
  head: number;
  /** The current epoch. */
  epoch: string;
  /** The oldest seq the server still keeps for replay (0: none). */
  oldest: number;
}

/** The host's state as of seq, sent by a server that has snapshots in place of the events up to seq. */
export interface Snapshot<T = unknown> {
  /** The last event the state reflects (0: the state before any event); delivery continues with seq + 1. */
  seq: number;
  /** The epoch of seq. */
  epoch: string;
  /** The state, as the host made it. */
  data: T;
  /** True when it replaces a position the server could not resume (a reset, counted in stats.resets); false on a fresh start. */
  reset: boolean;
}

/** One connection present in the session. */
export interface Member {
  user: string;
  conn: string;
}

export type Status = 'connecting' | 'connected' | 'reconnecting' | 'stopped';

/** Counters since the client was made. */
export interface Stats {
  /** Connections welcomed after the first one. */
  reconnects: number;
  /** Resumes the server could not serve (see onReset). */
  resets: number;
  /** Events dropped because their seq was already delivered. */
  duplicates: number;
  /** Publishes sent again on a new connection. */
  resent: number;
  /** rate_limited answers; the publish went again after a pause. */
  rateLimited: number;
  /** The highest seq acked to the server. */
  acked: number;
}

/** A WebSocket constructor: the browser's, or a compatible one (such as the ws package in Node). */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface Options {
  /** Resume after this seq (0: all retained history). Default: start with the first event after the server's head. */
  after?: number;
  /** The epoch of `after`; without it, `after` is taken in the server's current epoch. */
  epoch?: string;
  /**
   * Receives events, once each and in seq order. An event counts as
   * processed, and so is acked and resumed after, once this returns. An
   * exception is rethrown asynchronously; delivery goes on.
   */
  onEvent?: (event: FanoutEvent) => void;
  /**
   * Called when the server cannot serve the position the client resumed from
   * (a new epoch, or the position fell out of the history): the events in
   * between are lost to this client and the application must resync to
   * `head`. Delivery then continues with head + 1; or, if this returns a seq
   * from oldest - 1 up to head - 1, with the events after it, replayed from
   * the server's history.
   */
  onReset?: (reset: Reset) => number | void;
  /**
   * Receives the host's state when the server sends one: on a start without
   * a position, and in place of a reset when the position cannot be resumed
   * (onReset is then not called). The application replaces its state with
   * it; the events after its seq follow. Without this option snapshots are
   * ignored, and a refused resume calls onReset.
   */
  onSnapshot?: (snapshot: Snapshot) => void;
  /** The connections present: after each welcome (change null), join and leave. */
  onPresence?: (members: Member[], change: { type: 'join' | 'leave'; member: Member } | null) => void;
  /** Connection state changes, with a short reason. */
  onStatus?: (status: Status, reason: string) => void;
  /** An error message from the server that answers no publish, and the error that stopped the client. */
  onError?: (error: FanoutError) => void;
  /** Milliseconds past the server's heartbeat interval before a silent server counts as dead; also bounds the wait for a welcome. Default 10000. */
  timeout?: number;
  /** Reconnect delays in milliseconds: doubling from min to max, jittered between half and all of it. Default [100, 10000]. */
  backoff?: [min: number, max: number];
  /** Shortest time between two acks, in milliseconds (acks are cumulative). Default 100. */
  ackInterval?: number;
  /** Publishes sent and not yet answered, at most. Keep it below the server's publish burst (100 by default). Default 32. */
  maxInFlight?: number;
  /** Largest publish, and largest frame, in bytes; match the server's maximum message size. Default 65536. */
  maxMessageSize?: number;
  /** The WebSocket constructor. Default: the global WebSocket. */
  WebSocket?: WebSocketConstructor;
}

interface Pub {
  id: string;
  msg: string;
  n: number; // bytes of msg
  gen: number; // the connection it is in flight on, unanswered; 0: not sent, or rate limited
  round: number; // the window round it was sent in
  promise: Promise<number>;
  resolve: (seq: number) => void;
  reject: (err: Error) => void;
}

// Wire messages from the server; fields by type (PROTOCOL.md).
interface Msg {
  type: string;
  [k: string]: any;
}

const now = Date.now;
const clock = () => (g.performance ? g.performance.now() : now());
/** Milliseconds of messages handled in one task before the rest waits for the next. */
const SLICE = 5;

/** Exponential delay for attempt n (from 0), with "equal jitter": a random point in the upper half. */
const delay = (min: number, max: number, n: number) => {
  const d = Math.min(max, min * 2 ** Math.min(n, 30));
  return d / 2 + (Math.random() * d) / 2;
};

const randomId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');

const utf8 = (s: string) => new TextEncoder().encode(s).length;

const g: any = globalThis;

type Timer = 'dead' | 'retry' | 'ack' | 'pub' | 'run';

/**
 * A connection to a fanout session that survives disconnects: it resumes
 * from the last processed event, drops duplicates, acks, answers
 * heartbeats, detects a dead server and retries publishes until they are
 * acked exactly once, until close() or a terminal close code.
 */
export class FanoutClient {
  /** Counters since the client was made. */
  readonly stats: Stats = { reconnects: 0, resets: 0, duplicates: 0, resent: 0, rateLimited: 0, acked: 0 };

  private o: Options;
  private url: string;
  private WS: WebSocketConstructor;
  private T: number;
  private max: number;
  private ws: WebSocket | null = null;
  private gen = 0; // bumped by every socket
  private welcomed = false;
  private snap = 0; // a snapshot is due: 1 on a fresh start, 2 in place of a reset
  private snapEp = ''; // the epoch of the welcome it follows
  private st: Status = 'connecting';
  private err: FanoutError | null = null;

  // The position: the last processed seq and its epoch.
  private seq: number;
  private ep: string;
  private known: boolean; // seq is a position to resume from

  private heartbeat = 0;
  private last = 0; // when the server was last heard from
  private attempt = 0;
  private everWelcomed = false;
  private ackable = 0; // last seq processed from this connection
  private acked = 0; // last seq acked on this connection
  private lastAck = 0;
  private timers: Record<Timer, any> = { dead: 0, retry: 0, ack: 0, pub: 0, run: 0 };
  private q: string[] = []; // lines received and not yet handled, from q[qi]
  private qi = 0;
  private busy = false; // handling messages: a frame that arrives now joins the queue
  private members = new Map<string, string>(); // conn -> user

  // Publishes in publish order, and the window that paces them on a connection.
  private pubs = new Map<string, Pub>();
  private size = 0; // how many may be in flight now
  private inflight = 0;
  private round = 0; // bumped by each pause
  private pauses = 0; // pauses since the server last accepted a publish
  private until = 0; // no publish is sent before this
  private kick = false;

  /**
   * Connects to the session at url (ws:, wss:, http:, https:, or relative to
   * the page) at once, and keeps reconnecting until close() or a terminal
   * close code.
   */
  constructor(url: string | URL, options: Options = {}) {
    this.o = options;
    const u = new URL(url, g.location?.href);
    u.protocol = u.protocol.replace(/^http/, 'ws');
    this.url = u.href;
    this.WS = options.WebSocket || g.WebSocket;
    if (!this.WS) throw new TypeError('fanout: no WebSocket constructor (pass options.WebSocket)');
    this.T = options.timeout ?? 10000;
    this.max = options.maxInFlight ?? 32;
    this.known = options.after != null;
    this.seq = options.after ?? 0;
    this.ep = options.epoch ?? '';
    g.addEventListener?.('online', this.online);
    g.document?.addEventListener?.('visibilitychange', this.check);
    this.open();
  }

  /** The connection state. */
  get status(): Status {
    return this.st;
  }

  /** The last processed seq and its epoch: where a later client can resume (options.after, options.epoch). */
  get position(): { seq: number; epoch: string } {
    return { seq: this.seq, epoch: this.ep };
  }

  /** The server's heartbeat interval in milliseconds, from the last welcome (0 before one). */
  get heartbeatInterval(): number {
    return this.heartbeat;
  }

  /** The connections present, as of the last welcome, join and leave. */
  get presence(): Member[] {
    return [...this.members].map(([conn, user]) => ({ user, conn }));
  }

  /**
   * Appends data (any JSON value) to the session's sequence and resolves to
   * the seq the server assigned to it. It is sent at once when connected,
   * else after the next welcome, and again with the same id after every
   * reconnect until the server answers: the server recognizes the id, so the
   * publish takes effect once. A rate_limited answer sends it again after a
   * pause. It rejects with a PublishError when the server refuses it, and
   * with the error that stopped the client. Give an id (1-64 bytes) to keep
   * the same effect across page loads, e.g. one stored with a draft.
   */
  publish(data: unknown, options: { id?: string } = {}): Promise<number> {
    if (this.err) return Promise.reject(this.err);
    const id = options.id ?? randomId();
    const old = this.pubs.get(id);
    if (old) return old.promise;
    const msg = JSON.stringify({ type: 'publish', id, data });
    const n = utf8(msg);
    const max = this.o.maxMessageSize ?? 65536;
    if (data === undefined || !id || utf8(id) > 64 || n > max) {
      return Promise.reject(
        n > max
          ? new PublishError('too_large', `message of ${n} bytes exceeds the maximum message size of ${max}`)
          : new PublishError('invalid', data === undefined ? 'data is required' : 'id must be 1-64 bytes'),
      );
    }
    const p = { id, msg, n, gen: 0, round: 0 } as Pub;
    p.promise = new Promise((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
    });
    this.pubs.set(id, p);
    this.sendPubs();
    return p.promise;
  }

  /**
   * Sends a last ack and a normal close (1000), stops reconnecting and fails
   * pending publishes with a ClosedError. Calling it again does nothing.
   */
  close(): void {
    if (this.err) return;
    if (this.welcomed) this.sendAck();
    this.stop(new ClosedError());
  }

  // ---- connections ----------------------------------------------------------

  private open() {
    this.clear('retry');
    const u = new URL(this.url);
    if (this.known) {
      u.searchParams.set('after', String(this.seq));
      if (this.ep) u.searchParams.set('epoch', this.ep);
    }
    const ws = new this.WS(u.href);
    this.ws = ws;
    this.gen++;
    this.welcomed = false;
    this.snap = 0;
    this.ackable = this.acked = 0;
    this.last = now();
    this.check();
    ws.onmessage = (e) => this.ws === ws && this.frame(ws, e.data);
    ws.onclose = (e) => this.ws === ws && this.closed(e.code, e.reason);
    ws.onerror = () => {}; // a close follows; some WebSocket implementations throw an unheard error
  }

  /**
   * A frame: one or more messages separated by "\n". They are handled in
   * order, in slices of a few milliseconds: a frame of thousands of events
   * leaves the page time to draw between slices, and a frame that arrives
   * meanwhile waits its turn.
   */
  private frame(ws: WebSocket, data: unknown) {
    this.last = now();
    if (typeof data !== 'string') return this.drop('binary frame');
    const lines = data.split('\n');
    if (this.qi < this.q.length) for (const l of lines) this.q.push(l);
    else {
      this.q = lines;
      this.qi = 0;
    }
    if (!this.busy && !this.timers.run) this.run(ws);
  }

  private run(ws: WebSocket) {
    this.timers.run = 0;
    const out: string[] = [];
    const end = clock() + SLICE;
    this.busy = true;
    try {
      while (this.qi < this.q.length) {
        const line = this.q[this.qi++];
        if (!line.trim()) continue;
        let m: Msg;
        try {
          m = JSON.parse(line);
        } catch {
          return this.drop('malformed message');
        }
        if (!m || typeof m.type != 'string' || (!this.welcomed && m.type != 'welcome')) {
          return this.drop('unexpected message');
        }
        this.handle(m, out);
        if (this.ws !== ws) return; // the message, or a callback, ended this connection
        if (!(this.qi & 15) && this.qi < this.q.length && clock() > end) {
          this.q = this.q.slice(this.qi);
          this.qi = 0;
          this.timers.run = setTimeout(() => this.run(ws));
          break;
        }
      }
    } finally {
      this.busy = false;
    }
    if (this.ackable > this.acked) {
      if (now() - this.lastAck >= (this.o.ackInterval ?? 100)) out.push(this.ackMsg());
      else this.ackSoon();
    }
    this.send(out);
    if (this.kick) this.sendPubs();
  }

  private handle(m: Msg, out: string[]) {
    switch (m.type) {
      case 'welcome':
        return this.welcome(m);
      case 'event':
        return this.snap ? this.drop('event before the snapshot') : this.event(m);
      case 'snapshot':
        return this.snapshot(m);
      case 'ack':
      case 'error':
        if (typeof m.id == 'string') return this.answer(m);
        return this.o.onError?.(new FanoutError(`fanout: server error: ${m.code}: ${m.message}`, m.code));
      case 'join':
      case 'leave': {
        const member = { user: m.user, conn: m.conn };
        if (m.type == 'join') this.members.set(m.conn, m.user);
        else this.members.delete(m.conn);
        return this.o.onPresence?.(this.presence, { type: m.type, member });
      }
      case 'ping':
        out.push('{"type":"pong"}');
      // Other types: a newer server may send more; they are skipped.
    }
  }

  private welcome(w: Msg) {
    if (this.welcomed) return this.drop('second welcome');
    const ws = this.ws;
    this.heartbeat = w.heartbeat > 0 ? w.heartbeat : 0;
    const reset = this.known && (!w.resumed || (!!this.ep && this.ep != w.epoch));
    this.snap = w.snapshot === true && this.o.onSnapshot ? (reset ? 2 : 1) : 0;
    if (this.snap) {
      // The snapshot that follows is the resync and sets the position; a
      // reconnect before it asks as this connection did.
      this.snapEp = w.epoch;
    } else if (reset) {
      // The position is gone: the application resyncs to head.
      this.stats.resets++;
      this.seq = w.head;
      this.ep = w.epoch;
      const r = this.o.onReset?.({ head: w.head, epoch: w.epoch, oldest: w.oldest });
      if (this.ws !== ws) return;
      if (typeof r == 'number' && w.oldest > 0 && r >= w.oldest - 1 && r < w.head) {
        this.seq = r; // replay from there, on a new connection
        return this.drop('replaying after a reset', 0);
      }
    } else if (!this.known) {
      this.seq = w.head;
      this.ep = w.epoch;
    } else if (!this.ep) {
      this.ep = w.epoch; // resumed in "the current epoch", now known
    }
    if (!this.snap) this.known = true;
    this.welcomed = true;
    this.attempt = 0;
    if (this.everWelcomed) this.stats.reconnects++;
    this.everWelcomed = true;
    // The server's publish budget is per connection: the window starts full.
    this.size = this.max;
    this.inflight = this.pauses = this.until = 0;
    this.round++;
    this.members = new Map((w.presence || []).map((m: Member) => [m.conn, m.user]));
    this.setStatus('connected', 'welcomed');
    if (this.ws !== ws) return;
    this.o.onPresence?.(this.presence, null);
    this.kick = true;
  }

  private snapshot(m: Msg) {
    if (!this.snap) return; // not asked for (no onSnapshot): skipped, as an unknown type
    if (!Number.isSafeInteger(m.seq) || m.seq < 0) return this.drop('bad snapshot');
    const reset = this.snap == 2;
    this.snap = 0;
    this.known = true;
    if (reset) this.stats.resets++;
    this.seq = this.ackable = m.seq;
    this.ep = typeof m.epoch == 'string' && m.epoch ? m.epoch : this.snapEp;
    try {
      this.o.onSnapshot?.({ seq: m.seq, epoch: this.ep, data: m.data, reset });
    } catch (err) {
      setTimeout(() => {
        throw err;
      });
    }
  }

  private event(e: Msg) {
    if (!Number.isSafeInteger(e.seq) || e.seq < 1) return this.drop('bad event');
    if (e.seq <= this.seq) {
      this.stats.duplicates++; // delivered already, e.g. replayed after a resume
      return;
    }
    if (e.seq != this.seq + 1) return this.drop(`sequence gap: ${e.seq} after ${this.seq}`);
    this.seq = this.ackable = e.seq;
    const ev: FanoutEvent = { seq: e.seq, epoch: this.ep, data: e.data };
    if (e.from != null) ev.from = e.from;
    if (e.id != null) ev.id = e.id;
    try {
      this.o.onEvent?.(ev);
    } catch (err) {
      setTimeout(() => {
        throw err;
      });
    }
  }

  /** The server's ack or error for a publish. */
  private answer(m: Msg) {
    const p = this.pubs.get(m.id);
    if (!p || p.gen != this.gen) return; // answered already, or not in flight here
    this.inflight--;
    this.kick = true;
    if (m.code == 'rate_limited') {
      // Nothing was appended: send it again after a pause, one at a time
      // until the server takes publishes again. Only the first refusal of a
      // round pauses; the others answer publishes already on their way.
      this.stats.rateLimited++;
      p.gen = 0;
      if (p.round == this.round) {
        this.round++;
        this.size = 1;
        this.until = now() + delay(100, 2000, this.pauses++);
      }
      return;
    }
    this.pauses = 0;
    if (this.size < this.max) this.size++;
    this.pubs.delete(m.id);
    if (m.type == 'ack') p.resolve(m.seq);
    else p.reject(new PublishError(m.code, m.message));
  }

  /** Sends the publishes not in flight on this connection, as many as the window lets go. */
  private sendPubs() {
    this.kick = false;
    if (!this.welcomed) return;
    this.clear('pub');
    const max = this.o.maxMessageSize ?? 65536;
    let buf: string[] = [];
    let n = 0;
    for (const p of this.pubs.values()) {
      if (p.gen == this.gen) continue;
      if (this.inflight >= this.size) break;
      const wait = this.until - now();
      if (wait > 0) {
        this.timers.pub = setTimeout(() => this.sendPubs(), wait);
        break;
      }
      if (n && n + 1 + p.n > max) {
        this.send(buf);
        buf = [];
        n = 0;
      }
      if (p.gen) this.stats.resent++;
      p.gen = this.gen;
      p.round = this.round;
      this.inflight++;
      buf.push(p.msg);
      n += p.n + 1;
    }
    this.send(buf);
  }

  private ackMsg() {
    this.acked = this.stats.acked = this.ackable;
    this.lastAck = now();
    return `{"type":"ack","seq":${this.ackable}}`;
  }

  private sendAck() {
    if (this.ackable > this.acked) this.send([this.ackMsg()]);
  }

  private ackSoon() {
    if (!this.timers.ack) {
      this.timers.ack = setTimeout(() => {
        this.timers.ack = 0;
        if (this.welcomed) this.sendAck();
      }, this.lastAck + (this.o.ackInterval ?? 100) - now());
    }
  }

  private send(lines: string[]) {
    if (lines.length && this.ws?.readyState === 1) this.ws.send(lines.join('\n'));
  }

  // ---- liveness and reconnects ----------------------------------------------

  /**
   * Drops the connection when the server has been silent too long: past its
   * heartbeat plus the timeout once welcomed, past the timeout before. It
   * keeps one timer and compares clock times, so a throttled or late timer
   * (a background tab) still detects a dead server at its next run, as do
   * the page becoming visible and the browser coming online.
   */
  private check = () => {
    this.clear('dead');
    if (!this.ws) return;
    const limit = this.welcomed ? (this.heartbeat ? this.heartbeat + this.T : 0) : this.T;
    if (!limit) return;
    const left = this.last + limit - now();
    if (left <= 0) return this.drop(this.welcomed ? 'server silent past its heartbeat' : 'no welcome in time');
    this.timers.dead = setTimeout(() => {
      this.check();
    }, left);
  };

  /** Back online: retry at once instead of waiting for the backoff. */
  private online = () => {
    if (this.err) return;
    if (!this.ws) {
      this.attempt = 0;
      this.open();
    } else this.check();
  };

  private closed(code: number, reason: string) {
    this.detach();
    if (terminalCodes.includes(code)) return this.stop(new CloseError(code, reason));
    this.retry(`closed (${code}${reason ? ' ' + reason : ''})`);
  }

  /** Abandons the connection (dead, broken, or to be replaced) and reconnects. */
  private drop(reason: string, wait?: number) {
    const ws = this.detach();
    try {
      ws?.close(1000, reason.slice(0, 100));
    } catch {
      // a socket that never opened may refuse; it is gone either way
    }
    this.retry(reason, wait);
  }

  private retry(reason: string, wait?: number) {
    if (this.err) return;
    this.setStatus('reconnecting', reason);
    if (this.err) return;
    this.timers.retry = setTimeout(() => this.open(), wait ?? delay(...(this.o.backoff || [100, 10000]), this.attempt++));
  }

  private detach() {
    const ws = this.ws;
    if (ws) ws.onmessage = ws.onclose = null; // onerror stays: a late error must find a listener
    this.ws = null;
    this.welcomed = false;
    this.clear('dead');
    this.clear('ack');
    this.clear('pub');
    this.clear('run');
    this.q = [];
    this.qi = 0;
    return ws;
  }

  private stop(err: FanoutError) {
    this.err = err;
    this.clear('retry');
    const ws = this.detach();
    try {
      ws?.close(1000);
    } catch {
      // as in drop
    }
    g.removeEventListener?.('online', this.online);
    g.document?.removeEventListener?.('visibilitychange', this.check);
    for (const p of this.pubs.values()) p.reject(err);
    this.pubs.clear();
    this.setStatus('stopped', err.message);
    if (!(err instanceof ClosedError)) this.o.onError?.(err);
  }

  private clear(t: Timer) {
    clearTimeout(this.timers[t]);
    this.timers[t] = 0;
  }

  private setStatus(s: Status, reason: string) {
    this.st = s;
    this.o.onStatus?.(s, reason);
  }
}
