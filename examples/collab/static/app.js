// The collab page: a browser client of the fanout wire protocol, version 1
// (PROTOCOL.md at the root of the repository, which is authoritative).
//
// What it does, protocol-wise:
//   - splits every frame on "\n" and handles each JSON message in order;
//   - remembers the epoch and the last processed seq, with the list itself,
//     in sessionStorage, so a reload resumes where the tab was;
//   - always connects with ?after=<seq>[&epoch=<epoch>] (after=0 on a first
//     visit: the whole retained history), and reconnects with jittered
//     exponential backoff;
//   - drops events it already processed (seq <= last) and treats a gap as a
//     broken connection;
//   - on welcome with resumed:false (the server cannot serve the position,
//     e.g. it restarted and its in-memory history has a new epoch) it says so,
//     clears the list and replays the new epoch from after=0, or, when the
//     welcome says snapshot:true, takes the server's notes from the snapshot
//     message that follows and continues after its seq;
//   - answers ping with pong, and treats the server as dead when nothing has
//     arrived for heartbeat + 10 s;
//   - acks cumulatively, at most every 100 ms;
//   - gives each publish a random id, keeps it (in sessionStorage too) until
//     the server's ack or error, and resends it with the same id after every
//     reconnect, so a note is added exactly once.
'use strict';

(() => {
  const DEAD_AFTER_EXTRA_MS = 10_000; // silence past heartbeat + this: the server is dead
  const HANDSHAKE_TIMEOUT_MS = 10_000; // for the upgrade and the welcome
  const ACK_INTERVAL_MS = 100; // acks are cumulative: one per interval at most
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15_000;
  const MAX_NAME = 32; // characters, as the server checks
  const MAX_NOTE = 280; // characters, as the server checks (it refuses longer notes)
  const MAX_ITEMS = 1000; // notes kept on the page and in sessionStorage

  // Close codes after which reconnecting would not help (PROTOCOL.md, "Close
  // codes"); every other code, 1006 included, means reconnect and resume.
  const TERMINAL = new Map([
    [1000, 'the server ended the connection'],
    [1008, 'closed for flooding (1008)'],
    [1009, 'a message was too big (1009)'],
    [4000, 'protocol error (4000)'],
  ]);
  const CLOSE_REASONS = new Map([
    [1001, 'server going away'],
    [1006, 'connection lost'],
    [4001, 'fell behind'],
    [4002, 'heartbeat timeout'],
  ]);

  const $ = (id) => document.getElementById(id);
  const el = {
    me: $('me'), status: $('status'), statusText: $('status-text'), retry: $('retry'),
    otherTab: $('other-tab'), notice: $('notice'), noticeTitle: $('notice-title'),
    noticeText: $('notice-text'), noticeClose: $('notice-close'), items: $('items'),
    empty: $('empty'), errors: $('errors'), composer: $('composer'), text: $('text'),
    count: $('count'), add: $('add'), presence: $('presence'), presenceCount: $('presence-count'),
    stat: (name) => $('stat-' + name),
  };

  // ---- identity ---------------------------------------------------------
  // EXAMPLE ONLY: the name in ?user= is sent to the server as is, and the
  // server believes it. A real app signs its users in.
  const params = new URLSearchParams(location.search);
  let user = (params.get('user') || '').trim();
  if (!validName(user)) {
    user = randomGuest();
    params.set('user', user);
    history.replaceState(null, '', location.pathname + '?' + params + location.hash);
  }

  // ---- state kept across reloads ---------------------------------------
  // items and seq are saved together, so a reload never resumes past a note
  // it did not keep, nor keeps a note it will be sent again.
  const storageKey = 'fanout-collab/v1/' + user;
  const state = load(); // { epoch, seq, items: [{seq, data, from, id}], pending: [{id, text, seq}] }
  let dirty = false;

  // ---- connection state -------------------------------------------------
  let ws = null; // the current socket; messages of older sockets are ignored
  let welcomed = false;
  let asked = { after: 0, epoch: null }; // the position this connection asked for
  let ackedSent = 0; // highest seq acked on this connection
  let lastAck = 0; // highest seq acked in this epoch, for display
  let heartbeatMs = 0;
  let attempt = 0; // reconnect attempts since the last welcome
  let stopped = false;
  let everWelcomed = false;
  let reconnectTimer = 0;
  let deadTimer = 0;
  let presence = new Map(); // conn id -> user
  const stats = { reconnects: 0, resets: 0, duplicates: 0 };

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    asked = { after: state.seq, epoch: state.epoch };
    const q = new URLSearchParams({ user, after: String(state.seq) });
    if (state.epoch) q.set('epoch', state.epoch);
    const url = new URL('ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = q.toString();
    url.hash = '';

    const sock = new WebSocket(url);
    ws = sock;
    welcomed = false;
    ackedSent = 0;
    armDeadTimer(HANDSHAKE_TIMEOUT_MS);
    sock.onmessage = (ev) => { if (sock === ws) onFrame(sock, ev.data); };
    sock.onclose = (ev) => { if (sock === ws) onClose(ev); };
  }

  // onFrame handles one frame: one or more messages separated by "\n".
  function onFrame(sock, data) {
    armDeadTimer(welcomed ? heartbeatMs + DEAD_AFTER_EXTRA_MS : HANDSHAKE_TIMEOUT_MS);
    if (typeof data !== 'string') return dropConnection('binary frame');
    for (const line of data.split('\n')) {
      if (line.trim() === '') continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        return dropConnection('malformed message');
      }
      if (msg === null || typeof msg !== 'object' || typeof msg.type !== 'string') {
        return dropConnection('message without type');
      }
      if (!welcomed && msg.type !== 'welcome') return dropConnection('no welcome');
      handle(msg);
      if (ws !== sock) return; // the message ended this connection
    }
  }

  function handle(msg) {
    switch (msg.type) {
      case 'welcome': return onWelcome(msg);
      case 'snapshot': return onSnapshot(msg);
      case 'event': return onEvent(msg);
      case 'ack': return onAck(msg);
      case 'error': return onServerError(msg);
      case 'join':
        presence.set(msg.conn, msg.user);
        return renderPresence();
      case 'leave':
        presence.delete(msg.conn);
        return renderPresence();
      case 'ping':
        send([{ type: 'pong' }]);
        return;
      default:
        // A newer server may know more types; this page does not need them.
        console.warn('collab: ignoring message of unknown type', msg.type);
    }
  }

  function onWelcome(w) {
    if (welcomed) return dropConnection('second welcome');
    heartbeatMs = w.heartbeat > 0 ? w.heartbeat : 25_000;
    presence = new Map((w.presence || []).map((m) => [m.conn, m.user]));

    if (!w.resumed) {
      // The position cannot be served (PROTOCOL.md, "welcome and resume"):
      // delivery starts after head, and this tab must resync.
      stats.resets++;
      const epochChanged = asked.epoch !== null && asked.epoch !== w.epoch;
      const replayedAll = asked.after === 0 && asked.epoch === w.epoch;
      state.epoch = w.epoch;
      state.items = [];
      lastAck = 0;
      for (const p of state.pending) p.seq = null; // resent below, or after the replay
      let why = epochChanged
        ? 'The server’s history has a new epoch (it restarted, and its in-memory log is gone).'
        : 'This tab was away longer than the server keeps history.';
      if (w.head > 0 && !replayedAll && !w.snapshot) {
        // Replay all the server keeps of this epoch: after=0 with its epoch.
        state.seq = 0;
        save();
        showNotice(why + ' The list was cleared and reloaded from the server.');
        render();
        dropConnection('resync', 0, 'reset');
        return;
      }
      state.seq = w.head;
      if (w.snapshot) why += ' The list was reloaded from the server.';
      else if (w.head > 0) why = `Notes up to #${w.head} are no longer kept by the server; showing what follows.`;
      else why += ' The list was cleared; new notes appear as they are added.';
      showNotice(why);
    } else {
      state.epoch = w.epoch;
      ackedSent = asked.after; // the server counts a resume position as acked
      lastAck = Math.max(lastAck, ackedSent);
    }

    welcomed = true;
    attempt = 0;
    if (everWelcomed) stats.reconnects++;
    everWelcomed = true;
    save();
    armDeadTimer(heartbeatMs + DEAD_AFTER_EXTRA_MS);
    setStatus('connected', 'connected');
    el.retry.hidden = true;
    // Publishes not acked yet go again, with the same ids: the server
    // answers a repeated id with its original seq instead of adding it twice.
    if (state.pending.length > 0) send(state.pending.map(publishMessage));
    render();
  }

  // The server's notes as of seq (PROTOCOL.md, "snapshot"): they replace
  // the list, and the events after seq follow.
  function onSnapshot(snap) {
    if (!Number.isSafeInteger(snap.seq) || snap.seq < 0) return dropConnection('bad snapshot');
    const notes = snap.data && Array.isArray(snap.data.notes) ? snap.data.notes : [];
    state.epoch = snap.epoch;
    state.seq = snap.seq;
    state.items = notes.slice(-MAX_ITEMS).map((n) => ({
      seq: n.seq,
      data: n.data,
      from: typeof n.from === 'string' ? n.from : null,
      id: typeof n.id === 'string' ? n.id : null,
    }));
    for (const p of state.pending) {
      const n = state.items.find((x) => x.from === user && x.id === p.id);
      if (n) p.seq = n.seq;
    }
    save();
    dirty = true;
    scheduleRender();
  }

  function onEvent(e) {
    if (!Number.isSafeInteger(e.seq) || e.seq < 1) return dropConnection('bad event');
    if (e.seq <= state.seq) {
      stats.duplicates++; // already processed, e.g. replayed after a resume
      renderStats();
      return;
    }
    if (e.seq !== state.seq + 1) {
      // Never happens with a correct server; resume from what we have.
      console.error(`collab: gap: got seq ${e.seq} after ${state.seq}`);
      return dropConnection('gap');
    }
    state.seq = e.seq;
    const item = {
      seq: e.seq,
      data: e.data,
      from: typeof e.from === 'string' ? e.from : null, // absent: the server published it
      id: typeof e.id === 'string' ? e.id : null,
    };
    state.items.push(item);
    if (state.items.length > MAX_ITEMS) state.items.splice(0, state.items.length - MAX_ITEMS);
    if (item.from === user && item.id !== null) {
      const p = state.pending.find((x) => x.id === item.id);
      if (p) p.seq = item.seq; // in the list now; still pending until its ack
    }
    dirty = true;
    scheduleRender();
  }

  function onAck(a) {
    const i = state.pending.findIndex((p) => p.id === a.id);
    if (i < 0) return; // an ack for a resend that was already answered
    state.pending.splice(i, 1);
    dirty = true;
    scheduleRender();
  }

  function onServerError(err) {
    let text = `${err.message || 'refused'} (${err.code})`;
    if (typeof err.id === 'string') {
      const i = state.pending.findIndex((p) => p.id === err.id);
      if (i >= 0) {
        const [p] = state.pending.splice(i, 1); // answered: not retried
        text = `“${shorten(p.text, 40)}” was not added: ${text}`;
        dirty = true;
        scheduleRender();
      }
    }
    showError(text);
  }

  function onClose(ev) {
    ws = null;
    welcomed = false;
    clearTimeout(deadTimer);
    const terminal = TERMINAL.get(ev.code);
    if (terminal) {
      stopped = true;
      setStatus('stopped', 'stopped: ' + terminal);
      el.retry.hidden = false;
      if (ev.reason) showError(`Connection closed: ${ev.reason} (${ev.code})`);
      renderPresence();
      return;
    }
    scheduleReconnect(undefined, 'reconnecting', CLOSE_REASONS.get(ev.code) || `closed (${ev.code})`);
    renderPresence();
  }

  // dropConnection abandons the current socket (dead, broken, or to be
  // replaced) and reconnects.
  function dropConnection(reason, delayMs, statusState = 'reconnecting') {
    const sock = ws;
    ws = null;
    welcomed = false;
    clearTimeout(deadTimer);
    if (sock) {
      sock.onmessage = null;
      sock.onclose = null;
      try {
        sock.close(1000, reason);
      } catch {
        // closing a socket that never opened may throw; it is gone either way
      }
    }
    if (statusState === 'reconnecting') console.warn('collab: reconnecting:', reason);
    scheduleReconnect(delayMs, statusState, reason === 'resync' ? 'history reset, resyncing' : reason);
    renderPresence();
  }

  function scheduleReconnect(delayMs, statusState, why) {
    if (stopped) return;
    if (delayMs === undefined) delayMs = backoff(attempt++);
    setStatus(statusState, statusState === 'reset' ? 'reset — resyncing' : `reconnecting (${why})`);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delayMs);
  }

  // backoff is exponential with "equal jitter": a random point in the upper
  // half, so tabs dropped together do not come back together.
  function backoff(n) {
    const d = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(n, 16));
    return d / 2 + Math.random() * (d / 2);
  }

  function armDeadTimer(ms) {
    clearTimeout(deadTimer);
    deadTimer = setTimeout(() => dropConnection(welcomed ? 'server silent' : 'no welcome in time'), ms);
  }

  // send writes messages in one frame, one per line. JSON.stringify never
  // emits a raw newline, so the framing stays intact.
  function send(msgs) {
    if (ws === null || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(msgs.map((m) => JSON.stringify(m)).join('\n'));
    return true;
  }

  function publishMessage(p) {
    return { type: 'publish', id: p.id, data: { text: p.text } };
  }

  function publish(text) {
    const p = { id: randomId(), text, seq: null };
    state.pending.push(p);
    save(); // at once: a reload right now still resends it with the same id
    if (welcomed) send([publishMessage(p)]);
    render();
  }

  // Cumulative acks, coalesced; the same tick saves the state when it changed.
  setInterval(() => {
    if (welcomed && state.seq > ackedSent && send([{ type: 'ack', seq: state.seq }])) {
      ackedSent = lastAck = state.seq;
      renderStats();
    }
    if (dirty) save();
  }, ACK_INTERVAL_MS);

  // ---- storage -------------------------------------------------------------
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
    try {
      sessionStorage.setItem(storageKey, JSON.stringify(state));
    } catch (err) {
      console.warn('collab: cannot save state', err);
    }
  }

  // ---- rendering -----------------------------------------------------------
  let renderQueued = false;
  let renderedSeq = -1; // notes above it are highlighted as new

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(render, 0);
  }

  function render() {
    renderQueued = false;
    const list = el.items;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    const pendingIds = new Map(state.pending.map((p) => [p.id, p]));
    const frag = document.createDocumentFragment();
    for (const it of state.items) {
      const waiting = it.from === user && it.id !== null && pendingIds.has(it.id);
      const meta = waiting ? 'waiting for ack' : timeOf(it.data);
      const li = row(`#${it.seq}`, it.from, noteText(it.data), meta);
      li.dataset.seq = String(it.seq);
      if (it.from === user) li.classList.add('mine');
      if (waiting) li.classList.add('pending');
      if (renderedSeq >= 0 && it.seq > renderedSeq) li.classList.add('fresh');
      frag.append(li);
    }
    for (const p of state.pending) {
      if (p.seq !== null) continue; // shown in the list already
      const li = row('…', user, p.text, welcomed ? 'sending…' : 'waiting for connection');
      li.classList.add('pending', 'mine');
      li.dataset.pending = p.id;
      frag.append(li);
    }
    list.replaceChildren(frag);
    renderedSeq = state.seq;
    if (atBottom) list.scrollTop = list.scrollHeight;
    el.empty.hidden = state.items.length + state.pending.length > 0;
    renderStats();
    renderPresence();
  }

  function row(seq, from, text, meta) {
    const li = document.createElement('li');
    const s = span('seq', seq);
    const f = span('from', from === null ? 'server' : from);
    if (from === null) f.classList.add('server');
    else f.style.color = colorOf(from);
    li.append(s, f, span('text', text), span('meta', meta));
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
    for (const u of presence.values()) byUser.set(u, (byUser.get(u) || 0) + 1);
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
    el.presence.classList.toggle('stale', !welcomed);
    el.presenceCount.textContent = String(users.length);
  }

  function renderStats() {
    const epoch = el.stat('epoch');
    epoch.textContent = state.epoch ? state.epoch.slice(0, 8) + '…' : '–';
    epoch.title = state.epoch || '';
    el.stat('seq').textContent = String(state.seq);
    el.stat('acked').textContent = String(lastAck);
    el.stat('pending').textContent = String(state.pending.length);
    el.stat('heartbeat').textContent = heartbeatMs ? `${heartbeatMs / 1000} s` : '–';
    el.stat('reconnects').textContent = String(stats.reconnects);
    el.stat('resets').textContent = String(stats.resets);
    el.stat('duplicates').textContent = String(stats.duplicates);
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

  // ---- helpers ---------------------------------------------------------------
  function noteText(data) {
    if (data !== null && typeof data === 'object' && typeof data.text === 'string') return data.text;
    return JSON.stringify(data);
  }

  function timeOf(data) {
    const at = data !== null && typeof data === 'object' ? Date.parse(data.at) : NaN;
    return Number.isNaN(at) ? '' : new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
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

  // ---- page wiring -------------------------------------------------------------
  el.me.textContent = user;
  el.otherTab.href = '?user=' + encodeURIComponent(randomGuest());
  el.otherTab.addEventListener('click', () => {
    setTimeout(() => { el.otherTab.href = '?user=' + encodeURIComponent(randomGuest()); }, 0);
  });
  el.noticeClose.onclick = () => { el.notice.hidden = true; };
  el.retry.onclick = () => {
    stopped = false;
    el.retry.hidden = true;
    attempt = 0;
    connect();
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

  // Back online: do not wait for the backoff.
  window.addEventListener('online', () => {
    if (ws === null && !stopped) scheduleReconnect(0, 'reconnecting', 'back online');
  });
  window.addEventListener('pagehide', save);

  updateComposer();
  render();
  setStatus('connecting', 'connecting');
  connect();
})();
