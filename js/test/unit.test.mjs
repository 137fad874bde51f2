// Unit tests: the client against a fake WebSocket, the test playing the
// server frame by frame.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseError, ClosedError, FanoutClient, PublishError } from '../dist/index.js';
import { event, fakeWebSocket, sleep, until, welcome } from './helpers.mjs';

let clients = [];
afterEach(() => {
  for (const c of clients) c.close(); // a failed test leaves no client reconnecting
  clients = [];
});

function setup(options = {}) {
  const { FakeWebSocket, sockets } = fakeWebSocket();
  const got = [];
  const statuses = [];
  const errors = [];
  const client = new FanoutClient('ws://example.test/ws?user=u', {
    WebSocket: FakeWebSocket,
    backoff: [1, 2],
    onEvent: (e) => got.push(e),
    onStatus: (s, why) => statuses.push([s, why]),
    onError: (e) => errors.push(e),
    ...options,
  });
  clients.push(client);
  const last = () => sockets[sockets.length - 1];
  return { client, sockets, last, got, statuses, errors };
}

test('events are delivered once, in order, with their epoch; duplicates after a resume are dropped', async () => {
  const { client, sockets, last, got } = setup();
  assert.equal(last().url.searchParams.has('after'), false, 'a fresh start asks for nothing');
  last().recv(welcome({ head: 0 }), event(1), event(2));
  last().recv(event(3));
  last().end(1006);
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  assert.equal(last().url.searchParams.get('after'), '3');
  assert.equal(last().url.searchParams.get('epoch'), 'e1');
  assert.equal(last().url.searchParams.get('user'), 'u', 'the caller\'s query is kept');
  last().recv(welcome({ head: 3, resumed: true, conn: 'c2' }), event(2), event(3), event(4));
  assert.deepEqual(got.map((e) => [e.seq, e.epoch]), [[1, 'e1'], [2, 'e1'], [3, 'e1'], [4, 'e1']]);
  assert.deepEqual(got[0].data, { n: 1 });
  assert.equal(client.stats.duplicates, 2);
  assert.equal(client.stats.reconnects, 1);
  assert.deepEqual(client.position, { seq: 4, epoch: 'e1' });
  client.close();
});

test('a gap, a malformed message or a message before the welcome drops the connection; unknown types are skipped', async () => {
  const { client, sockets, last, got } = setup();
  last().recv(welcome({ head: 5 }), event(6), { type: 'from-the-future', x: 1 }, event(8));
  assert.equal(sockets[0].closedWith, 1000, 'gap: dropped');
  assert.deepEqual(got.map((e) => e.seq), [6]);
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  assert.equal(last().url.searchParams.get('after'), '6');
  last().recv('{not json');
  assert.equal(sockets[1].closedWith, 1000);
  await until(() => sockets.length === 3, 1000, 'a reconnect');
  last().recv(event(7));
  assert.equal(sockets[2].closedWith, 1000, 'an event before the welcome');
  assert.deepEqual(got.map((e) => e.seq), [6]);
  client.close();
});

test('a refused resume calls onReset with the new head and epoch; delivery goes on after head', async () => {
  const resets = [];
  const { client, last, got } = setup({ after: 7, epoch: 'old', onReset: (r) => { resets.push(r); } });
  assert.equal(last().url.searchParams.get('after'), '7');
  assert.equal(last().url.searchParams.get('epoch'), 'old');
  last().recv(welcome({ epoch: 'new', head: 3, oldest: 1, resumed: false }), event(4));
  assert.deepEqual(resets, [{ head: 3, epoch: 'new', oldest: 1 }]);
  assert.deepEqual(got.map((e) => [e.seq, e.epoch]), [[4, 'new']]);
  assert.equal(client.stats.resets, 1);
  client.close();
});

test('a snapshot after the welcome goes to onSnapshot before the events after its seq, and sets the position', async () => {
  const seen = [];
  const { client, sockets, last, got } = setup({
    onSnapshot: (snap) => seen.push(['snapshot', snap]),
    onEvent: (e) => { got.push(e); seen.push(['event', e.seq]); },
  });
  // The snapshot may come in the frame after the welcome; it lags the head.
  last().recv(welcome({ head: 5, snapshot: true }));
  assert.deepEqual(seen, [], 'nothing before the snapshot');
  last().recv({ type: 'snapshot', epoch: 'e1', seq: 3, data: { notes: [1, 2, 3] } }, event(4), event(5));
  assert.deepEqual(seen, [
    ['snapshot', { seq: 3, epoch: 'e1', data: { notes: [1, 2, 3] }, reset: false }],
    ['event', 4], ['event', 5],
  ], 'events up to head after the snapshot are delivered, not dropped');
  assert.deepEqual(client.position, { seq: 5, epoch: 'e1' });
  assert.equal(client.stats.resets, 0, 'a fresh start is no reset');
  await until(() => last().messages().some((m) => m.type === 'ack' && m.seq === 5), 1000, 'the ack of 5');
  // A reconnect resumes from the position the snapshot started.
  last().end(1006);
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  assert.equal(last().url.searchParams.get('after'), '5');
  assert.equal(last().url.searchParams.get('epoch'), 'e1');
  assert.deepEqual(got.map((e) => e.seq), [4, 5]);
  client.close();
});

test('a refused resume with a snapshot: the snapshot is the resync, in place of onReset', async () => {
  const snaps = [];
  const resets = [];
  const { client, sockets, last, got } = setup({
    after: 7, epoch: 'old', onReset: (r) => { resets.push(r); }, onSnapshot: (s) => snaps.push(s),
  });
  last().recv(welcome({ epoch: 'new', head: 3, oldest: 1, resumed: false, snapshot: true }));
  // Dropped before its snapshot: the next connection asks as this one did.
  last().end(1006);
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  assert.equal(last().url.searchParams.get('after'), '7');
  assert.equal(last().url.searchParams.get('epoch'), 'old');
  last().recv(welcome({ epoch: 'new', head: 3, oldest: 1, resumed: false, snapshot: true }),
    { type: 'snapshot', epoch: 'new', seq: 2, data: 'state' }, event(3));
  assert.deepEqual(resets, [], 'onReset is not called');
  assert.deepEqual(snaps, [{ seq: 2, epoch: 'new', data: 'state', reset: true }]);
  assert.deepEqual(got.map((e) => [e.seq, e.epoch]), [[3, 'new']]);
  assert.equal(client.stats.resets, 1);
  assert.deepEqual(client.position, { seq: 3, epoch: 'new' });
  client.close();
});

test('an event before the snapshot, or a malformed one, drops the connection; without onSnapshot it is skipped', async () => {
  const { client, sockets, last, got } = setup({ onSnapshot: () => {} });
  last().recv(welcome({ head: 2, snapshot: true }), event(1));
  assert.equal(sockets[0].closedWith, 1000, 'an event before the snapshot');
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  assert.equal(last().url.searchParams.has('after'), false, 'still a fresh start');
  last().recv(welcome({ head: 2, snapshot: true }), { type: 'snapshot', epoch: 'e1', seq: -1, data: null });
  assert.equal(sockets[1].closedWith, 1000, 'a bad seq');
  assert.deepEqual(got, []);
  client.close();

  // A client that does not take snapshots starts after head, as before.
  const plain = setup();
  plain.last().recv(welcome({ head: 2, snapshot: true }), { type: 'snapshot', epoch: 'e1', seq: 1, data: null },
    event(2), event(3));
  assert.equal(plain.sockets[0].closedWith, null);
  assert.deepEqual(plain.got.map((e) => e.seq), [3], 'events up to head are dropped');
  plain.client.close();
});

test('onReset may ask for a replay of what the server retains', async () => {
  const { client, sockets, last, got } = setup({ after: 7, epoch: 'old', onReset: (r) => r.oldest - 1 });
  last().recv(welcome({ epoch: 'new', head: 3, oldest: 2, resumed: false }), event(4));
  assert.equal(got.length, 0, 'nothing delivered from the refused connection');
  await until(() => sockets.length === 2, 1000, 'the replay connection');
  assert.equal(last().url.searchParams.get('after'), '1');
  assert.equal(last().url.searchParams.get('epoch'), 'new');
  last().recv(welcome({ epoch: 'new', head: 3, oldest: 2, resumed: true }), event(2), event(3), event(4));
  assert.deepEqual(got.map((e) => e.seq), [2, 3, 4]);
  client.close();
});

test('pings are answered at once; acks are cumulative and coalesced', async () => {
  const { client, last } = setup({ ackInterval: 100 });
  last().recv(welcome({ head: 0 }), { type: 'ping' }, event(1));
  assert.deepEqual(last().messages(), [{ type: 'pong' }, { type: 'ack', seq: 1 }]);
  for (let i = 2; i <= 6; i++) last().recv(event(i));
  assert.equal(last().messages().length, 2, 'no ack within the interval');
  await until(() => last().messages().length === 3, 1000, 'the coalesced ack');
  assert.deepEqual(last().messages()[2], { type: 'ack', seq: 6 });
  assert.equal(client.stats.acked, 6);
  await sleep(150);
  assert.equal(last().messages().length, 3, 'nothing new, no ack');
  client.close();
});

test('publish: ack resolves with the seq, a window bounds what is in flight, resent with the same id after a reconnect', async () => {
  const { client, sockets, last } = setup({ maxInFlight: 2 });
  const ps = [1, 2, 3].map((n) => client.publish({ n }));
  assert.equal(sockets[0].sent.length, 0, 'nothing is sent before the welcome');
  last().recv(welcome());
  let sent = last().messages();
  assert.deepEqual(sent.map((m) => m.data), [{ n: 1 }, { n: 2 }], 'two in flight');
  const ids = sent.map((m) => m.id);
  assert.match(ids[0], /^[0-9a-f]{32}$/);
  last().recv({ type: 'ack', id: ids[0], seq: 1 });
  assert.equal(await ps[0], 1);
  sent = last().messages();
  assert.equal(sent.length, 3, 'the answer made room');
  const id3 = sent[2].id;
  last().end(1006);
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  last().recv(welcome({ head: 3, resumed: true }));
  sent = last().messages();
  assert.deepEqual(sent.map((m) => m.id), [ids[1], id3], 'unanswered publishes go again, same ids, in order');
  assert.equal(client.stats.resent, 2);
  last().recv({ type: 'ack', id: ids[1], seq: 2 }, { type: 'ack', id: id3, seq: 3 });
  assert.deepEqual(await Promise.all(ps), [1, 2, 3]);
  client.close();
});

test('publish: rate_limited is sent again after a pause; other refusals reject with a PublishError', async () => {
  const { client, last } = setup();
  last().recv(welcome());
  const a = client.publish('a');
  const b = client.publish('b');
  const [ma, mb] = last().messages();
  last().recv({ type: 'error', code: 'rate_limited', id: ma.id, message: 'slow down' },
    { type: 'error', code: 'rate_limited', id: mb.id, message: 'slow down' });
  assert.equal(client.stats.rateLimited, 2);
  assert.equal(last().messages().length, 2, 'nothing resent during the pause');
  await until(() => last().messages().length === 3, 1000, 'the resend after the pause');
  assert.equal(last().messages()[2].id, ma.id, 'one at a time, in order');
  last().recv({ type: 'ack', id: ma.id, seq: 1 });
  assert.equal(await a, 1);
  assert.equal(last().messages()[3].id, mb.id);
  last().recv({ type: 'error', code: 'invalid', id: mb.id, message: 'no' });
  await assert.rejects(b, (e) => e instanceof PublishError && e.code === 'invalid');
  await assert.rejects(client.publish('x'.repeat(70_000)), (e) => e instanceof PublishError && e.code === 'too_large');
  await assert.rejects(client.publish(undefined), (e) => e instanceof PublishError && e.code === 'invalid');
  assert.equal(last().messages().length, 4, 'refused locally: nothing sent');
  client.close();
});

test('a terminal close code stops the client and fails pending publishes with a CloseError', async () => {
  const { client, sockets, last, statuses, errors } = setup();
  last().recv(welcome());
  const p = client.publish(1);
  last().end(4000, 'protocol error');
  await assert.rejects(p, (e) => e instanceof CloseError && e.code === 4000 && e.reason === 'protocol error');
  assert.equal(client.status, 'stopped');
  assert.deepEqual(statuses.at(-1)[0], 'stopped');
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof CloseError);
  await assert.rejects(client.publish(2), CloseError);
  await sleep(20);
  assert.equal(sockets.length, 1, 'no reconnect');
});

test('1001, 1011, 4001 and 4002 reconnect with backoff', async () => {
  const { client, sockets, last } = setup();
  for (const code of [1001, 1011, 4001, 4002]) {
    last().recv(welcome());
    const n = sockets.length;
    last().end(code);
    assert.equal(client.status, 'reconnecting');
    await until(() => sockets.length === n + 1, 1000, `a reconnect after ${code}`);
  }
  client.close();
});

test('backoff grows and is jittered; the online event retries at once', async () => {
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  try {
    const { client, sockets, last } = setup({ backoff: [5_000, 60_000] });
    last().end(1006);
    await sleep(50);
    assert.equal(sockets.length, 1, 'waiting for the backoff');
    target.dispatchEvent(new Event('online'));
    assert.equal(sockets.length, 2, 'online: retried at once');
    last().recv(welcome());
    assert.equal(client.status, 'connected');
    client.close();
    target.dispatchEvent(new Event('online'));
    assert.equal(sockets.length, 2, 'closed: online does nothing');
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});

test('a server silent past its heartbeat plus the timeout is dropped; a talking one is not', async () => {
  const { client, sockets, last } = setup({ timeout: 100 });
  last().recv(welcome({ heartbeat: 50 }));
  const start = Date.now();
  let quiet = 0;
  while (Date.now() - start < 400) {
    last().recv({ type: 'ping' });
    quiet = Date.now();
    await sleep(30);
  }
  assert.equal(sockets.length, 1, 'pinged regularly: kept');
  await until(() => sockets.length === 2, 2000, 'the dead server to be dropped');
  const took = Date.now() - quiet;
  assert.ok(took >= 140, `dropped after ${took} ms, not before heartbeat + timeout`);
  assert.equal(sockets[0].closedWith, 1000);
  client.close();
});

test('no welcome within the timeout: the attempt is abandoned', async () => {
  const { client, sockets } = setup({ timeout: 50 });
  await until(() => sockets.length === 2, 2000, 'a second attempt');
  assert.equal(sockets[0].closedWith, 1000);
  client.close();
});

test('presence: the welcome\'s list, then join and leave', () => {
  const seen = [];
  const { client, last } = setup({ onPresence: (m, c) => seen.push([m.map((x) => x.conn).sort(), c]) });
  last().recv(welcome({ presence: [{ user: 'u', conn: 'c1' }, { user: 'v', conn: 'c0' }] }));
  last().recv({ type: 'join', user: 'w', conn: 'c2' }, { type: 'leave', user: 'v', conn: 'c0' });
  assert.deepEqual(seen, [
    [['c0', 'c1'], null],
    [['c0', 'c1', 'c2'], { type: 'join', member: { user: 'w', conn: 'c2' } }],
    [['c1', 'c2'], { type: 'leave', member: { user: 'v', conn: 'c0' } }],
  ]);
  assert.deepEqual(client.presence.map((m) => m.user).sort(), ['u', 'w']);
  client.close();
});

test('close sends a last ack and 1000, and fails pending publishes with a ClosedError', async () => {
  const { client, last, errors } = setup({ ackInterval: 10_000 });
  last().recv(welcome(), event(1));
  last().recv(event(2));
  const p = client.publish('late');
  client.close();
  await assert.rejects(p, ClosedError);
  assert.deepEqual(last().messages().filter((m) => m.type === 'ack').map((m) => m.seq), [1, 2]);
  assert.equal(last().closedWith, 1000);
  assert.equal(client.status, 'stopped');
  assert.equal(errors.length, 0, 'a close is not an error');
  client.close();
});

test('a large frame is handled in slices, in order, with frames that arrive meanwhile after it', async () => {
  let busy = 0;
  const { client, last, got } = setup({
    onEvent: (e) => {
      got.push(e);
      const end = performance.now() + 0.05; // some work per event
      while (performance.now() < end) busy++;
    },
  });
  const n = 2000;
  last().recv(welcome({ head: 0 }), ...Array.from({ length: n }, (_, i) => event(i + 1)));
  const first = got.length;
  assert.ok(first > 0 && first < n, `the first task handled ${first} of ${n} events`);
  last().recv(event(n + 1), event(n + 2));
  assert.equal(got.length, first, 'a frame arriving meanwhile waits its turn');
  await until(() => got.length === n + 2, 5000, 'all events');
  assert.deepEqual(got.map((e) => e.seq), Array.from({ length: n + 2 }, (_, i) => i + 1));
  await until(() => last().messages().some((m) => m.type === 'ack' && m.seq === n + 2), 1000, 'the ack of the last');
  assert.ok(busy > 0);
  client.close();
});

test('a connection dropped with messages still queued drops them: they are resumed after', async () => {
  const { client, sockets, last, got } = setup({
    onEvent: (e) => {
      got.push(e);
      const end = performance.now() + 0.05;
      while (performance.now() < end);
    },
  });
  last().recv(welcome({ head: 0 }), ...Array.from({ length: 2000 }, (_, i) => event(i + 1)));
  const handled = got.length;
  assert.ok(handled < 2000);
  last().end(1006);
  await until(() => sockets.length === 2, 1000, 'a reconnect');
  assert.equal(got.length, handled, 'nothing handled from a closed connection');
  assert.equal(last().url.searchParams.get('after'), String(handled));
  client.close();
});
