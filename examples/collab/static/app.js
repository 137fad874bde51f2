// The collab page. The wire protocol (PROTOCOL.md at the root of the
// repository) is all in the browser client package, js/ in the repository,
// whose build is fanout-client.js next to this file: it resumes, drops
// duplicates, acks, answers heartbeats, detects a dead server, retries
// publishes with the same ids and reports resets and presence. This file
// keeps the list and the notes being sent, and draws them.
//
// The list, the position it reflects (epoch and seq) and the notes not yet
// acked are kept together in sessionStorage, so a reload resumes where the
// tab was and resends its pending notes with their ids (added once).
import { FanoutClient, PublishError } from './fanout-client.js';

const MAX_NAME = 32; // characters, as the server checks
const MAX_NOTE = 280; // characters, as the server checks (it refuses longer notes)
const MAX_ITEMS = 300; // notes kept in sessionStorage
const MAX_ROWS = 200; // notes drawn: the last ones
const TICK_MS = 250; // redraws the connection figures
const BURST_MS = 200; // the shortest time between two draws of a burst
const SAVE_MS = 1000; // saves the state when it changed (and on pagehide)

const $ = (id) => document.getElementById(id);
const stats = new Map(); // name -> the element of a connection figure
const el = {
  me: $('me'), status: $('status'), statusText: $('status-text'), retry: $('retry'),
  otherTab: $('other-tab'), notice: $('notice'), noticeTitle: $('notice-title'),
  noticeText: $('notice-text'), noticeClose: $('notice-close'), items: $('items'),
  empty: $('empty'), errors: $('errors'), composer: $('composer'), text: $('text'),
  count: $('count'), add: $('add'), presence: $('presence'), presenceCount: $('presence-count'),
  stat: (name) => stats.get(name) || stats.set(name, $('stat-' + name)).get(name),
};

// ---- identity -------------------------------------------------------------
// EXAMPLE ONLY: the name in ?user= is sent to the server as is, and the
// server believes it. A real app signs its users in.
const params = new URLSearchParams(location.search);
let user = (params.get('user') || '').trim();
if (!validName(user)) {
  user = randomGuest();
  params.set('user', user);
  history.replaceState(null, '', location.pathname + '?' + params + location.hash);
}

// ---- state kept across reloads --------------------------------------------
// Each document (/d/NAME/) keeps its own; the default one (/) keeps the
// key it always had.
const doc = (location.pathname.match(/^\/d\/([^/]+)\//) || [])[1];
const storageKey = 'fanout-collab/v2/' + user + (doc ? '/d/' + doc : '');
const state = load(); // { epoch, seq, items: [{seq, data, from, id}], pending: [{id, text, seq}] }
let dirty = false;
let client = null;
let connected = false;
let members = [];

function start() {
  client = new FanoutClient('ws?user=' + encodeURIComponent(user), {
    // A first visit asks for no position: the server sends its latest
    // notes (onSnapshot), then the notes after them.
    after: state.epoch ? state.seq : undefined,
    epoch: state.epoch || undefined,
    onEvent,
    onSnapshot,
    onReset,
    onStatus,
    onPresence: (m) => {
      members = m;
      renderPresence();
    },
    onError: (err) => showError(err.message),
  });
  // Notes not acked yet go again with their ids: the server answers a
  // repeated id with its original seq instead of adding it twice.
  for (const p of state.pending) send(p);
}

function onEvent(e) {
  state.seq = e.seq;
  state.epoch = e.epoch;
  const item = { seq: e.seq, data: e.data, from: e.from ?? null, id: e.id ?? null };
  state.items.push(item);
  if (state.items.length > 2 * MAX_ITEMS) trim();
  if (item.from === user && item.id !== null) {
    const p = state.pending.find((x) => x.id === item.id);
    if (p) p.seq = item.seq; // in the list now; still pending until its ack
  }
  dirty = true;
  scheduleRender();
}

// onSnapshot: the server's latest notes, as of seq. A new tab gets them
// at once, however far back they go; a tab whose position the server
// cannot serve (it restarted with a new epoch, or the tab was away longer
// than it keeps history) gets them in place of that position, and says so.
// The notes after seq follow as events.
function onSnapshot({ seq, epoch, data, reset }) {
  if (reset) {
    showNotice(resetReason(epoch) + ' The list was replaced by the server’s latest notes.');
  }
  state.epoch = epoch;
  state.seq = seq;
  state.items = (Array.isArray(data?.notes) ? data.notes : []).map((n) => (
    { seq: n.seq, data: n.data, from: n.from ?? null, id: n.id ?? null }));
  for (const p of state.pending) {
    const item = state.items.find((x) => x.from === user && x.id === p.id);
    p.seq = item ? item.seq : null;
  }
  save();
  renderAll();
}

function resetReason(epoch) {
  return state.epoch && state.epoch !== epoch
    ? 'The server’s history has a new epoch (it restarted, and its in-memory log is gone).'
    : 'This tab was away longer than the server keeps history.';
}

// onReset: as onSnapshot's reset, from a server without snapshots. There
// is no state to load: the list is cleared and replays all the server
// still keeps.
function onReset({ head, epoch, oldest }) {
  const why = resetReason(epoch);
  const from = oldest > 0 ? oldest - 1 : head;
  state.epoch = epoch;
  state.seq = from;
  state.items = [];
  for (const p of state.pending) p.seq = null;
  showNotice(why + (from > 0
    ? ` Notes up to #${from} are no longer kept by the server; showing what follows.`
    : ' The list was cleared and reloaded from the server.'));
  save();
  renderAll();
  return from < head ? from : undefined;
}

function onStatus(status, why) {
  connected = status === 'connected';
  if (status === 'reconnecting' && why === 'replaying after a reset') setStatus('reset', 'reset — resyncing');
  else if (status === 'reconnecting') setStatus('reconnecting', `reconnecting (${why})`);
  else if (status === 'stopped') setStatus('stopped', 'stopped: ' + why);
  else setStatus(status, status);
  el.retry.hidden = status !== 'stopped';
  renderPresence();
  renderPending();
}

function send(p) {
  client.publish({ text: p.text }, { id: p.id }).then(
    () => settle(p),
    (err) => {
      // Refused by the server: not retried. Anything else means the client
      // stopped: the note stays pending for the Reconnect button.
      if (!(err instanceof PublishError)) return;
      settle(p);
      showError(`“${shorten(p.text, 40)}” was not added: ${err.message}`);
    },
  );
}

function settle(p) {
  const i = state.pending.indexOf(p);
  if (i >= 0) state.pending.splice(i, 1);
  const r = p.seq !== null && rowOf(p.seq);
  if (r) {
    setClass(r, r.key.replace(' pending', ''));
    setText(r.t[3], timeOf(r.data));
  }
  dirty = true;
  renderPending();
}

function publish(text) {
  const p = { id: randomId(), text, seq: null };
  state.pending.push(p);
  save(); // at once: a reload right now still resends it with the same id
  send(p);
  renderPending();
}

// ---- storage ----------------------------------------------------------------
function load() {
  try {
    const s = JSON.parse(sessionStorage.getItem(storageKey));
    if (s && Number.isSafeInteger(s.seq) && Array.isArray(s.items) && Array.isArray(s.pending)) {
      return { epoch: typeof s.epoch === 'string' ? s.epoch : null, seq: s.seq, items: s.items, pending: s.pending };
    }
  } catch {
    // unreadable: start fresh
  }
  return { epoch: null, seq: 0, items: [], pending: [] };
}

function save() {
  dirty = false;
  trim();
  try {
    sessionStorage.setItem(storageKey, JSON.stringify(state));
  } catch (err) {
    console.warn('collab: cannot save state', err);
  }
}

// ---- rendering --------------------------------------------------------------
// The list draws the last MAX_ROWS notes in a fixed set of rows, at most
// once a frame. A few new notes move the oldest rows to the end and fill
// them; a burst rewrites the text of the rows in place, so that thousands
// of notes a second cost at most MAX_ROWS text updates a frame: no new
// elements, no style recalculation, and no layout read (the scroll box
// keeps to the bottom by itself, see style.css).
const rows = []; // the rows drawn, in list order: {li, seq, data, key, t: [seq, from, text, meta]}
let renderedSeq = 0; // the last note drawn
let renderQueued = false;
const pendingLis = []; // the rows of notes sent and not yet in the list, at its end

// Draws at most once a frame, and during a burst at most every BURST_MS:
// nobody reads thousands of notes a second, and each draw of a burst
// rewrites every row. A hidden tab gets no frames, so a timer stands in
// (the list is drawn when the tab is seen again anyway).
let burstUntil = 0; // no burst draw before this (performance.now())
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const once = () => { if (renderQueued) render(); };
  const wait = burstUntil - performance.now();
  if (wait > 0) {
    setTimeout(() => requestAnimationFrame(once), wait);
    setTimeout(once, wait + 250);
    return;
  }
  requestAnimationFrame(once);
  setTimeout(once, 250);
}

// trim keeps the last MAX_ITEMS notes (in batches, not one by one).
function trim() {
  if (state.items.length > MAX_ITEMS) state.items.splice(0, state.items.length - MAX_ITEMS);
}

function renderAll() {
  for (const r of rows) r.li.remove();
  rows.length = 0;
  renderedSeq = 0;
  render(true);
}

function render(initial = false) {
  renderQueued = false;
  trim();
  const items = state.items;
  const n = Math.min(items.length, MAX_ROWS);
  const base = items.length - n; // rows[i] draws items[base + i]
  const fresh = Math.min(n, items.length - firstAfter(renderedSeq)); // notes not drawn yet
  if (items.length) renderedSeq = items[items.length - 1].seq;
  // A few new notes are highlighted; a burst is not.
  const highlight = !initial && fresh <= 20;
  burstUntil = fresh > 20 ? performance.now() + BURST_MS : 0;
  const before = pendingLis[0] || null;
  if (highlight && rows.length === n && fresh > 0) {
    // Full: the oldest rows go to the end, to draw the new notes.
    const moved = rows.splice(0, fresh);
    const frag = document.createDocumentFragment();
    for (const r of moved) frag.append(r.li);
    rows.push(...moved);
    el.items.insertBefore(frag, before);
  } else if (rows.length !== n) {
    const frag = document.createDocumentFragment();
    while (rows.length < n) {
      const r = newRow();
      rows.push(r);
      frag.append(r.li);
    }
    while (rows.length > n) rows.pop().li.remove();
    el.items.insertBefore(frag, before);
  }
  const waiting = state.pending.length ? new Set(state.pending.map((p) => p.id)) : null;
  for (let i = 0; i < n; i++) {
    const it = items[base + i];
    const r = rows[i];
    if (r.seq !== it.seq) fill(r, it, waiting, highlight && i >= n - fresh);
    else if (!highlight && r.key.endsWith(' fresh')) setClass(r, r.key.slice(0, -6));
  }
  if (state.pending.length || pendingLis.length) renderPending();
  else {
    setHidden(el.empty, items.length > 0);
    renderStats();
  }
}

// newRow makes a row whose four cells each hold one text node, so that
// drawing another note into it changes text and nothing else.
function newRow() {
  const li = document.createElement('li');
  const t = ['seq', 'from', 'text', 'meta'].map((cls) => {
    const s = document.createElement('span');
    s.className = cls;
    return s.appendChild(document.createTextNode(''));
  });
  for (const x of t) li.append(x.parentNode);
  return { li, seq: 0, data: null, key: '', from: undefined, t };
}

// fill draws item it into row r, writing only what differs from what the
// row showed before.
function fill(r, it, waiting, fresh) {
  const mine = it.from === user && it.id !== null && waiting !== null && waiting.has(it.id);
  r.seq = it.seq;
  r.data = it.data;
  r.li.dataset.seq = String(it.seq);
  setText(r.t[0], '#' + it.seq);
  if (r.from !== it.from) {
    r.from = it.from;
    const f = r.t[1].parentNode;
    f.className = it.from === null ? 'from server' : 'from';
    f.style.color = it.from === null ? '' : colorOf(it.from);
    setText(r.t[1], it.from === null ? 'server' : it.from);
  }
  setText(r.t[2], noteText(it.data));
  setText(r.t[3], mine ? 'waiting for ack' : timeOf(it.data));
  setClass(r, (it.from === user ? 'mine' : '') + (mine ? ' pending' : '') + (fresh ? ' fresh' : ''));
}

function setClass(r, key) {
  if (r.key !== key) r.li.className = r.key = key;
}

function setText(node, text) {
  if (node.data !== text) node.data = text;
}

function setHidden(e, hidden) {
  if (e.hidden !== hidden) e.hidden = hidden;
}

// rowOf returns the row drawing the note seq, if any.
function rowOf(seq) {
  const i = rows.length ? seq - rows[0].seq : -1;
  return i >= 0 && i < rows.length && rows[i].seq === seq ? rows[i] : null;
}

// firstAfter is the index of the first kept note after seq.
function firstAfter(seq) {
  const items = state.items;
  if (!items.length || items[0].seq > seq) return 0;
  return Math.min(items.length, seq - items[0].seq + 1);
}

// renderPending draws the notes sent and not yet in the list, at its end.
function renderPending() {
  for (const li of pendingLis) li.remove();
  pendingLis.length = 0;
  for (const p of state.pending) {
    if (p.seq !== null) continue; // in the list already
    const li = row('…', user, p.text, connected ? 'sending…' : 'waiting for connection');
    li.classList.add('pending', 'mine');
    li.dataset.pending = p.id;
    el.items.append(li);
    pendingLis.push(li);
  }
  setHidden(el.empty, state.items.length + state.pending.length > 0);
  renderStats();
}

function row(seq, from, text, meta) {
  const li = document.createElement('li');
  const f = span('from', from === null ? 'server' : from);
  if (from === null) f.classList.add('server');
  else f.style.color = colorOf(from);
  li.append(span('seq', seq), f, span('text', text), span('meta', meta));
  return li;
}

function span(cls, text) {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text; // never innerHTML: notes and names are untrusted
  return s;
}

function renderPresence() {
  const byUser = new Map();
  for (const m of members) byUser.set(m.user, (byUser.get(m.user) || 0) + 1);
  const users = [...byUser.keys()].sort((a, b) => (a === user ? -1 : b === user ? 1 : a.localeCompare(b)));
  const frag = document.createDocumentFragment();
  for (const u of users) {
    const li = document.createElement('li');
    li.dataset.user = u;
    const av = span('avatar', initials(u));
    av.style.background = colorOf(u);
    li.append(av, span('name', u));
    const n = byUser.get(u);
    if (n > 1) li.append(span('tabs', `${n} tabs`));
    if (u === user) li.append(span('you', '(you)'));
    frag.append(li);
  }
  el.presence.replaceChildren(frag);
  el.presence.classList.toggle('stale', !connected);
  el.presenceCount.textContent = String(users.length);
}

function renderStats() {
  const s = client ? client.stats : {};
  const ep = client?.position.epoch || state.epoch || '';
  const epoch = el.stat('epoch');
  if (epoch.title !== ep) {
    epoch.textContent = ep ? ep.slice(0, 8) + '…' : '–';
    epoch.title = ep;
  }
  const hb = client?.heartbeatInterval;
  const figures = {
    seq: state.seq, acked: s.acked ?? 0, pending: state.pending.length,
    heartbeat: hb ? `${hb / 1000} s` : '–',
    reconnects: s.reconnects ?? 0, resets: s.resets ?? 0, duplicates: s.duplicates ?? 0,
  };
  for (const name in figures) setText(el.stat(name).firstChild, String(figures[name]));
}

function setStatus(stateName, text) {
  el.status.dataset.state = stateName;
  el.statusText.textContent = text;
}

function showNotice(text) {
  el.noticeTitle.textContent = 'History reset — resynced';
  el.noticeText.textContent = text;
  el.notice.hidden = false;
}

function showError(text) {
  const li = document.createElement('li');
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'Dismiss');
  close.onclick = () => li.remove();
  li.append(span('message', text), close);
  el.errors.append(li);
  while (el.errors.children.length > 5) el.errors.firstElementChild.remove();
  setTimeout(() => li.remove(), 15_000);
}

// ---- helpers ------------------------------------------------------------------
function noteText(data) {
  if (data !== null && typeof data === 'object' && typeof data.text === 'string') return data.text;
  return JSON.stringify(data);
}

// One formatter for every row: making one per call costs more than the row.
const clock = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
function timeOf(data) {
  const at = data !== null && typeof data === 'object' ? Date.parse(data.at) : NaN;
  return Number.isNaN(at) ? '' : clock.format(at);
}

function validName(name) {
  const n = [...name].length;
  return n >= 1 && n <= MAX_NAME;
}

function randomGuest() {
  return 'guest-' + String(1000 + Math.floor(Math.random() * 9000));
}

function randomId() {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function colorOf(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 55% 40%)`;
}

function initials(name) {
  const parts = name.split(/[\s\-_.]+/).filter(Boolean);
  const s = parts.length > 1 ? [...parts[0]][0] + [...parts[1]][0] : [...name].slice(0, 2).join('');
  return s.toUpperCase();
}

function shorten(s, n) {
  const chars = [...s];
  return chars.length > n ? chars.slice(0, n - 1).join('') + '…' : s;
}

// ---- page wiring ----------------------------------------------------------------
el.me.textContent = user;
el.otherTab.href = '?user=' + encodeURIComponent(randomGuest());
el.otherTab.addEventListener('click', () => {
  setTimeout(() => { el.otherTab.href = '?user=' + encodeURIComponent(randomGuest()); }, 0);
});
el.noticeClose.onclick = () => { el.notice.hidden = true; };
el.retry.onclick = () => {
  el.retry.hidden = true;
  start();
};

function updateComposer() {
  const n = [...el.text.value.trim()].length;
  el.count.textContent = `${n}/${MAX_NOTE}`;
  el.count.classList.toggle('over', n > MAX_NOTE);
  el.add.disabled = n === 0;
}
el.text.addEventListener('input', updateComposer);
el.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = el.text.value.trim();
  if (text === '') return;
  publish(text); // longer than MAX_NOTE: the server refuses it, and we show why
  el.text.value = '';
  updateComposer();
  el.text.focus();
});

setInterval(renderStats, TICK_MS);
setInterval(() => dirty && save(), SAVE_MS);
window.addEventListener('pagehide', save);

updateComposer();
setStatus('connecting', 'connecting');
start();
renderAll();
