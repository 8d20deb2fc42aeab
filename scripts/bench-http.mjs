// Pings over HTTP: a real `agentctl serve` on loopback, 64 concurrent HTTP/1.1 keep-alive clients (a lean one written
// here, no load tool to install), every ping checked as counted in the database; against the in-process Store.heartbeat rate
// measured in the same run, just before, on the same machine.
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { openStore } from '../dist/index.js';

const CLIENTS = 64;
const AGENTS = 64;

/** Store.heartbeat in this process over AGENTS agents: the rate pings are measured against. */
async function inProcessRate(db, n) {
  const store = await openStore({ path: db });
  try {
    for (let i = 0; i < AGENTS; i++) await store.heartbeat({ name: `inproc-${i}` }, Date.now());
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await store.heartbeat({ name: `inproc-${i % AGENTS}`, progress: i }, Date.now());
    return (n / (performance.now() - t0)) * 1000;
  } finally {
    await store.close();
  }
}

/**
 * Starts `agentctl serve` on a free loopback port; resolves with its base URL and the child. BENCH_SERVE_NODE_ARGS
 * (space-separated) are given to node for the server only, e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile it.
 */
function startServe(bin, db) {
  const nodeArgs = (process.env.BENCH_SERVE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, bin, '--db', db, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
      const m = /serving (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve({ child, base: m[1] });
    });
    child.once('exit', (code) => reject(new Error(`agentctl serve exited ${code}: ${err}`)));
  });
}

/**
 * One HTTP/1.1 keep-alive connection over loopback, as lean as a load tool's: requests written as prepared bytes,
 * answers parsed just enough (status line, Content-Length, body skipped), one request in flight at a time. The
 * load generator shares the machine's cores with the server, so node:http's client (a few times the server's cost
 * per request) would measure mostly itself.
 */
class Connection {
  constructor(host, port) {
    this.socket = connect({ host, port, noDelay: true });
    this.buf = Buffer.alloc(0);
    this.pending = null;
    this.socket.on('data', (d) => this.onData(d));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error('the server closed a keep-alive connection')));
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
  }

  /** Sends `head` (a whole GET request); resolves with { status, ms } once the answer has arrived whole. */
  request(head) {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, t0: performance.now() };
      this.socket.write(head);
    });
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0 || !this.pending) return;
    const head = this.buf.toString('latin1', 0, end);
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!m) return this.fail(new Error(`an answer without Content-Length: ${head.slice(0, 200)}`));
    const total = end + 4 + Number(m[1]);
    if (this.buf.length < total) return;
    if (this.buf.length > total) return this.fail(new Error('more bytes than one answer'));
    this.buf = Buffer.alloc(0);
    const { resolve, t0 } = this.pending;
    this.pending = null;
    resolve({ status: Number(head.slice(9, 12)), ms: performance.now() - t0 });
  }

  fail(err) {
    const p = this.pending;
    this.pending = null;
    p?.reject(err);
  }

  close() {
    this.socket.removeAllListeners('close');
    this.socket.destroy();
  }
}

/** A GET of `path` as bytes on the wire. */
const getRequest = (host, path) => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: agentctl-bench\r\nAccept: */*\r\n\r\n`, 'latin1');

/** One ping; resolves with its latency in ms, rejects unless 200/201. */
async function ping(conn, head) {
  const { status, ms } = await conn.request(head);
  if (status !== 200 && status !== 201) throw new Error(`ping answered ${status}`);
  return ms;
}

/**
 * Runs the HTTP ping bench and reports through `goal(label, ok, detail)` as the other figures do.
 * `ctx`: { dir (a temp dir), root (the checkout), goal, fmt, pct }.
 */
export async function benchHttp({ dir, root, goal, fmt, pct }, total = 20_000) {
  const bin = join(root, 'bin/agentctl');
  const inproc = await inProcessRate(join(dir, 'http-inproc.db'), 20_000);
  const db = join(dir, 'http.db');
  const made = spawnSync(process.execPath, [bin, '--db', db, 'token', 'create', 'bench', '--role', 'agent'], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`token create exited ${made.status}: ${made.stderr}`);
  const key = made.stdout.trim();
  const { child, base } = await startServe(bin, db);
  const { hostname, port, host } = new URL(base);
  const conns = Array.from({ length: CLIENTS }, () => new Connection(hostname, Number(port)));
  try {
    await Promise.all(conns.map((c) => c.ready));
    const path = (i, q = '') => `/ping/${key}/ping-${i % AGENTS}${q}`;
    // The requests, made once: the generator's own cost per ping is a write and a small parse.
    const heads = Array.from({ length: AGENTS }, (_, i) => getRequest(host, path(i)));
    for (let i = 0; i < AGENTS; i++) await ping(conns[0], getRequest(host, path(i, '?create=1')));
    // Warm-up: connections open, the JIT settled.
    let next = 0;
    const drive = async (n, lat) => {
      next = 0;
      await Promise.all(conns.map(async (c) => {
        for (let i = next++; i < n; i = next++) {
          const ms = await ping(c, heads[i % AGENTS]);
          lat?.push(ms);
        }
      }));
    };
    await drive(2_000);
    const lat = [];
    const t0 = performance.now();
    await drive(total, lat);
    const rate = (total / (performance.now() - t0)) * 1000;
    // Every ping answered OK is a heartbeat in the database: the sequence numbers add up.
    const store = await openStore({ path: db, mode: 'existing' });
    const counted = store.db.prepare("SELECT SUM(heartbeat_seq) AS n FROM agents WHERE name LIKE 'ping-%'").get().n;
    await store.close();
    const sent = AGENTS + 2_000 + total;
    const sorted = lat.sort((a, b) => a - b);
    const p50 = pct(sorted, 50);
    const p99 = pct(sorted, 99);
    console.log(`HTTP pings, ${CLIENTS} keep-alive clients on loopback: ${fmt(rate)}/s over ${fmt(total)} (p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms); ${fmt(counted)} of ${fmt(sent)} counted; in-process Store.heartbeat ${fmt(inproc)}/s`);
    goal('every HTTP ping answered OK is counted in the database', counted === sent, `${fmt(counted)} of ${fmt(sent)}`);
    goal('HTTP pings/s ≥ 1/3 of in-process Store.heartbeat', rate / inproc >= 1 / 3, `${fmt(rate / inproc, 2)}×`);
    goal('HTTP ping p99 ≤ 20 ms with 64 concurrent clients', p99 <= 20, `${fmt(p99, 2)} ms`);
    await exitToOffline({ bin, db, base, fmt, pct, goal });
  } finally {
    for (const c of conns) c.close();
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
  }
}

/** GET a JSON document with a bearer token. */
async function getJson(url, token) {
  const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!r.ok) throw new Error(`${url} answered ${r.status}`);
  return r.json();
}

/**
 * `agentctl run --server` wrapping a sleeping child: the time from SIGKILL to the child until the read API shows
 * the agent offline (the wrapper sees the exit and sends the exit-status ping with ?exited=1), over 10 runs.
 */
async function exitToOffline({ bin, db, base, fmt, pct, goal }) {
  const viewer = spawnSync(process.execPath, [bin, '--db', db, 'token', 'create', 'bench-viewer', '--role', 'viewer'], { encoding: 'utf8' }).stdout.trim();
  const key = spawnSync(process.execPath, [bin, '--db', db, 'token', 'create', 'bench-run', '--role', 'agent'], { encoding: 'utf8' }).stdout.trim();
  const times = [];
  for (let i = 0; i < 10; i++) {
    const run = spawn(process.execPath, [bin, 'run', '--server', base, '--name', 'exit-bench', '--interval', '1s', '--', 'sleep', '600'], { stdio: 'ignore', env: { ...process.env, AGENTCTL_TOKEN: key } });
    const done = new Promise((r) => run.once('exit', r));
    let pid;
    for (let t = 0; t < 2000 && !pid; t++) {
      const a = await getJson(`${base}/api/v1/agents/exit-bench`, viewer).catch(() => null);
      if (a?.agent.state === 'active' && a.agent.metadata?.run_pid && a.events.at(-1)?.toState === 'active') pid = a.agent.metadata.run_pid;
      else await new Promise((r) => setTimeout(r, 10));
    }
    if (!pid) throw new Error('run --server never became active on the server');
    const t0 = performance.now();
    process.kill(pid, 'SIGKILL');
    for (;;) {
      const a = await getJson(`${base}/api/v1/agents/exit-bench`, viewer);
      if (a.agent.state === 'offline') break;
      await new Promise((r) => setTimeout(r, 2));
    }
    times.push(performance.now() - t0);
    await done;
  }
  const sorted = times.sort((a, b) => a - b);
  console.log(`run --server: child killed → offline in the read API: p50 ${fmt(pct(sorted, 50), 1)} ms, max ${fmt(sorted.at(-1), 1)} ms over ${times.length}`);
  goal('run --server: the agent is offline on the server ≤ 1 s after its child dies (every one of 10)', sorted.at(-1) <= 1000, `max ${fmt(sorted.at(-1), 1)} ms`);
}
