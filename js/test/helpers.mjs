// Test helpers: the real example server behind the browser test's proxy
// (examples/collab, TestHarness), a fake WebSocket for unit tests, and
// waiting.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Builds and starts the example server with the harness of its browser test:
 * heartbeat 1 s (timeout 1 s), behind a proxy that the control server can
 * ask to drop, stall or deafen connections and to restart the server with a
 * new epoch. Stop it with stop().
 */
export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'fanout-js-'));
  const bin = join(dir, 'collab.test');
  execFileSync('go', ['test', '-c', '-o', bin, '.'], { cwd: join(repo, 'examples/collab'), stdio: 'inherit' });
  const child = spawn(bin, ['-test.run', '^TestHarness$', '-test.count', '1'], {
    cwd: join(repo, 'examples/collab'),
    env: { ...process.env, FANOUT_HARNESS: '1' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const lines = createInterface({ input: child.stdout });
  const [base, control] = await new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const f = line.split(' ');
      if (f[0] === 'harness') resolve([f[1], f[2]]);
      else if (process.env.VERBOSE) console.log('[harness]', line);
    });
    child.on('exit', (code) => reject(new Error(`harness exited with ${code}`)));
  });
  const ctl = async (path, method = 'POST') => {
    const res = await fetch(control + path, { method });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body}`);
    return body;
  };
  return {
    /** The WebSocket URL of the session for user. */
    url: (user) => `${base.replace(/^http/, 'ws')}/ws?user=${encodeURIComponent(user)}`,
    ctl,
    head: async () => JSON.parse(await ctl('/head', 'GET')),
    async stop() {
      child.stdin.end();
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`harness exited with ${code}`);
    },
  };
}

/** Resolves once cond() is true; rejects after ms. */
export async function until(cond, ms = 10_000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A fake WebSocket class for unit tests: sockets made by the client land in
 * sockets; the test plays the server with recv() and end().
 */
export function fakeWebSocket() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 1;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(s) {
      if (this.readyState !== 1) throw new Error('send on a closed socket');
      this.sent.push(s);
    }
    close(code) {
      this.readyState = 3;
      this.closedWith = code ?? 1005;
    }
    /** Delivers one frame holding msgs (objects or raw lines). */
    recv(...msgs) {
      this.onmessage?.({ data: msgs.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join('\n') });
    }
    /** The server closes the connection with code. */
    end(code, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    /** The messages the client sent, decoded, all frames in order. */
    messages() {
      return this.sent.flatMap((f) => f.split('\n')).map((l) => JSON.parse(l));
    }
  }
  return { FakeWebSocket, sockets };
}

export const welcome = (over = {}) => ({
  type: 'welcome', session: 's', epoch: 'e1', head: 0, oldest: 0, conn: 'c1', user: 'u',
  heartbeat: 25000, resumed: false, presence: [{ user: 'u', conn: 'c1' }], ...over,
});

export const event = (seq, data = { n: seq }, over = {}) => ({ type: 'event', seq, data, ...over });
