// Protocol tests: the client (with the ws package as its WebSocket, since
// Node 20 has none) against the real collab example server, which the test
// starts behind a proxy it controls (examples/collab, TestHarness). The
// server pings every second and closes a connection silent for a second
// after a ping (4002).
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { FanoutClient } from '../dist/index.js';
import { sleep, until } from './helpers.mjs';

let server;
let clients = [];
before(async () => {
  server = await startServerOnce();
});
after(async () => {
  await server?.stop();
});
afterEach(() => {
  for (const c of clients) c.close();
  clients = [];
});

async function startServerOnce() {
  const { startServer } = await import('./helpers.mjs');
  return startServer();
}

/** A client of user that records what it gets. */
function connect(user, options = {}) {
  const rec = { events: [], resets: [], statuses: [], errors: [] };
  const client = new FanoutClient(server.url(user), {
    WebSocket,
    backoff: [50, 500],
    onEvent: (e) => rec.events.push(e),
    onReset: (r) => { rec.resets.push(r); },
    onStatus: (s) => rec.statuses.push(s),
    onError: (e) => rec.errors.push(e),
    ...options,
  });
  clients.push(client);
  rec.client = client;
  rec.connected = () => until(() => client.status === 'connected', 10_000, `${user} connected`);
  rec.seqs = () => rec.events.map((e) => e.seq);
  return rec;
}

/** Checks that events are consecutive seqs of one epoch, each once. */
function assertExact(events, from, to) {
  assert.deepEqual(events.map((e) => e.seq), Array.from({ length: to - from + 1 }, (_, i) => from + i));
  assert.equal(new Set(events.map((e) => e.epoch)).size, 1);
}

test('two clients get the same events, once each and in order, server and client publishes interleaved', async () => {
  const a = connect('order-a');
  const b = connect('order-b');
  await a.connected();
  await b.connected();
  const { head } = await server.head();
  const pubs = [];
  for (let i = 0; i < 30; i++) pubs.push(a.client.publish({ text: `a${i}` }));
  await server.ctl('/publish?text=srv&n=20');
  const seqs = await Promise.all(pubs);
  await until(() => a.events.length === 50 && b.events.length === 50, 10_000, '50 events each');
  assertExact(a.events, head + 1, head + 50);
  assert.deepEqual(b.events, a.events, 'the same stream');
  assert.equal(new Set(seqs).size, 30, 'one seq per publish');
  for (const [i, seq] of seqs.entries()) {
    const e = a.events.find((x) => x.seq === seq);
    assert.equal(e.data.text, `a${i}`);
    assert.equal(e.from, 'order-a');
  }
  const srv = a.events.filter((e) => e.from === undefined).map((e) => e.data.text);
  assert.deepEqual(srv, Array.from({ length: 20 }, (_, i) => `srv ${i + 1}`), 'server publishes in order');
  assert.equal(a.client.stats.duplicates, 0);
  await until(() => a.client.stats.acked === head + 50, 5000, 'the last event acked');
});

test('a dropped connection resumes with after and epoch: everything published meanwhile, once, in order', async () => {
  const a = connect('resume-a');
  await a.connected();
  await server.ctl('/publish?text=before&n=3');
  await until(() => a.events.length === 3, 5000, 'three events');
  const pos = a.client.position;
  // Every WebSocket is cut, and new connections are refused for a second.
  await server.ctl('/drop?hold=1000');
  await server.ctl('/publish?text=away&n=20');
  await until(() => a.events.length === 23, 10_000, 'the 20 events published while away');
  assertExact(a.events, pos.seq - 2, pos.seq + 20);
  assert.ok(a.client.stats.reconnects >= 1);
  assert.equal(a.client.stats.resets, 0, 'a resume, not a reset');

  // A new client resumes from a stored position.
  const b = connect('resume-b', { after: pos.seq, epoch: pos.epoch });
  await until(() => b.events.length === 20, 5000, 'the replay');
  assert.deepEqual(b.events, a.events.slice(3));
  assert.equal(b.resets.length, 0);
});

test('publish: the ack is lost, the connection dropped, the retry takes effect once', async () => {
  const a = connect('once-a');
  await a.connected();
  const { head } = await server.head();
  // What the server sends to once-a is lost; what once-a sends arrives.
  await server.ctl('/deafen?user=once-a');
  const p = a.client.publish({ text: 'exactly once' });
  await until(async () => (await server.head()).head === head + 1, 5000, 'the publish to be appended');
  await server.ctl('/drop');
  const seq = await p;
  assert.equal(seq, head + 1, 'the retry got the original seq');
  assert.ok(a.client.stats.resent >= 1, 'it was sent again');
  await until(() => a.events.some((e) => e.seq === seq), 5000, 'the event');
  await server.ctl('/publish?text=after');
  await until(() => a.events.some((e) => e.seq === seq + 1), 5000, 'the next event');
  assert.equal((await server.head()).head, head + 2, 'appended once');
  assert.equal(a.events.filter((e) => e.data.text === 'exactly once').length, 1);
});

test('rate limiting: a backlog past the server\'s burst is paced, every publish appended once', async () => {
  // The server takes 50 publishes a second per connection, burst 100, and
  // closes with 1008 after 100 refusals within a second.
  const a = connect('rate-a');
  await a.connected();
  const { head } = await server.head();
  const n = 200;
  const seqs = await Promise.all(Array.from({ length: n }, (_, i) => a.client.publish({ text: `r${i}` })));
  assert.equal(new Set(seqs).size, n);
  assert.ok(a.client.stats.rateLimited > 0, 'the server refused some as rate limited');
  assert.equal(a.client.status, 'connected', 'never closed for flooding');
  assert.equal((await server.head()).head, head + n, 'each appended once');
  await until(() => a.events.length === n, 5000, 'all events');
  assert.deepEqual(a.events.map((e) => e.data.text).sort(), Array.from({ length: n }, (_, i) => `r${i}`).sort());
});

test('heartbeat: pings are answered, so an idle client stays; a silent server is detected and left', async () => {
  const a = connect('hb-a', { timeout: 1500 });
  await a.connected();
  assert.equal(a.client.heartbeatInterval, 1000);
  await sleep(3500);
  assert.equal(a.client.stats.reconnects, 0, 'no 4002: the pongs arrived');

  // Nothing passes on the connection any more, and nothing closes it.
  await server.ctl('/stall?user=hb-a');
  const start = Date.now();
  await server.ctl('/publish?text=during the stall');
  await until(() => a.client.stats.reconnects === 1, 10_000, 'the reconnect');
  const took = Date.now() - start;
  assert.ok(took >= 2000, `left the server after ${took} ms, not before heartbeat + timeout`);
  await until(() => a.events.some((e) => e.data.text === 'during the stall'), 5000, 'the event sent during the stall');
});

test('presence: members, join and leave', async () => {
  const seen = [];
  const a = connect('pres-a', { onPresence: (members, change) => seen.push(change) });
  await a.connected();
  const b = connect('pres-b');
  await b.connected();
  await until(() => a.client.presence.some((m) => m.user === 'pres-b'), 5000, 'pres-b to be present');
  assert.ok(b.client.presence.some((m) => m.user === 'pres-a'), 'the welcome lists who is here');
  b.client.close();
  await until(() => !a.client.presence.some((m) => m.user === 'pres-b'), 5000, 'pres-b to leave');
  assert.ok(seen.some((c) => c?.type === 'join' && c.member.user === 'pres-b'));
  assert.ok(seen.some((c) => c?.type === 'leave' && c.member.user === 'pres-b'));
});

test('a server restart (new epoch): onReset with the new head and epoch, then the new events', async () => {
  const a = connect('reset-a');
  await a.connected();
  const before = a.client.position.epoch;
  await server.ctl('/restart?notes=3');
  await until(() => a.resets.length === 1, 15_000, 'the reset');
  const { head, epoch } = await server.head();
  assert.notEqual(epoch, before);
  assert.deepEqual(a.resets[0], { head: 3, epoch, oldest: 1 });
  assert.equal(head, 3);
  await a.connected();
  await server.ctl('/publish?text=new epoch');
  await until(() => a.events.some((e) => e.epoch === epoch), 5000, 'an event of the new epoch');
  const fresh = a.events.filter((e) => e.epoch === epoch);
  assert.deepEqual(fresh.map((e) => e.seq), [4], 'delivery goes on after head');

  // A client that asks for a replay from the reset gets what is retained.
  const b = connect('reset-b', { after: 9, epoch: before, onReset: (r) => r.oldest - 1 });
  await until(() => b.events.length === 4, 5000, 'the replay');
  assertExact(b.events, 1, 4);
  assert.equal(b.events[0].epoch, epoch);
});
