// agentctl on PostgreSQL beside SQLite, in the same run: a throwaway cluster of the system's PostgreSQL (started with
// scripts/pg-cluster.mjs, as the tests start theirs, and removed at the end), one fresh database per figure.
// Figures: 8 processes' heartbeats/s on both engines; `agentctl heartbeat` against SQLite's; a health pass over
// 100,000 agents against one over 1,000; a fleet of 10,000 agents beating every 10 s with a monitor running; how soon
// a transition reaches `history --follow`.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { checkHealth, openStore } from '../dist/index.js';
import { startCluster } from './pg-cluster.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function admin(url, sql) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

/** A new database of the cluster, migrated as a writer opens it; returns its URL. */
async function freshDatabase(clusterUrl) {
  const name = `bench_${randomBytes(5).toString('hex')}`;
  await admin(clusterUrl, `CREATE DATABASE ${name} TEMPLATE template0`);
  const u = new URL(clusterUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  await (await openStore({ path: url })).close();
  return url;
}

function spawnJson(argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${argv[0]} exited ${code}`))));
  });
}

/** 8 processes, each `per` heartbeats one after another (scripts/bench-worker.mjs), on `db`; every heartbeat checked as counted. */
async function eightProcesses(here, db, per) {
  const startAt = Date.now() + 2000;
  const outs = await Promise.all(Array.from({ length: 8 }, (_, i) => spawnJson([join(here, 'bench-worker.mjs'), db, `p${i}`, String(per), String(startAt), 'plain'])));
  const end = Math.max(...outs.map((o) => o.end));
  const total = outs.reduce((s, o) => s + o.count, 0);
  const lat = outs.flatMap((o) => o.latencies).sort((a, b) => a - b);
  const store = await openStore({ path: db });
  const counted = Number((await store.sql.get('SELECT SUM(heartbeat_seq) AS n FROM agents')).n) - 8;
  await store.close();
  if (counted !== total) throw new Error(`lost heartbeats: ${total} sent, ${counted} counted`);
  return { rate: (total / (end - startAt)) * 1000, total, lat };
}

/** Median wall time of `agentctl --db DB heartbeat cli` over `runs` runs, the two databases interleaved. */
function cliBeats(bin, dbs, runs) {
  const times = dbs.map(() => []);
  for (const db of dbs) spawnSync(process.execPath, [bin, '--db', db, 'heartbeat', 'cli'], { stdio: 'ignore' });
  for (let i = 0; i < runs; i++) {
    dbs.forEach((db, k) => {
      const t = process.hrtime.bigint();
      const r = spawnSync(process.execPath, [bin, '--db', db, 'heartbeat', 'cli'], { stdio: 'ignore' });
      times[k].push(Number(process.hrtime.bigint() - t) / 1e6);
      if (r.status !== 0) throw new Error(`agentctl heartbeat exited ${r.status}`);
    });
  }
  return times.map(med);
}

/** `n` healthy agents (active, beat just now) written in one statement, with the contract `intervalMs`. */
async function pgFleet(url, n, intervalMs = 30_000, prefix = 'agent') {
  await admin(
    url,
    `INSERT INTO agents (name, state, state_since, state_reason, created_at, started_at, updated_at, last_heartbeat_at, heartbeat_seq, interval_ms)
     SELECT '${prefix}-' || g, 'active', t, 'first heartbeat', t, t, t, t, 1, ${intervalMs}
     FROM generate_series(0, ${n - 1}) g, (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) now`,
  );
}

/** Median wall time of one health pass over a healthy fleet of `n` agents on a fresh database, after a warm-up pass. */
async function passTime(clusterUrl, n) {
  const url = await freshDatabase(clusterUrl);
  await pgFleet(url, n);
  await admin(url, 'ANALYZE');
  const store = await openStore({ path: url });
  try {
    await checkHealth(store, Date.now());
    const times = [];
    for (let i = 0; i < 21; i++) {
      const t = performance.now();
      const r = await checkHealth(store, Date.now());
      times.push(performance.now() - t);
      if (r.transitions.length) throw new Error(`a healthy fleet had ${r.transitions.length} transitions`);
    }
    return med(times);
  } finally {
    await store.close();
  }
}

/**
 * 10,000 agents beating every 10 s (1,000 heartbeats/s from 4 processes) for `seconds`, with `agentctl monitor
 * --every 5s` running: heartbeat latency, and each pass of the monitor as health_loops records it.
 */
async function fleetUnderMonitor(here, bin, clusterUrl, seconds) {
  const url = await freshDatabase(clusterUrl);
  const agents = 10_000;
  const procs = 4;
  const everyMs = 5000;
  await pgFleet(url, agents, 10_000, 'fleet');
  await admin(url, 'ANALYZE');
  const monitor = spawn(process.execPath, [bin, '--db', url, 'monitor', '--every', '5s'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let monitorErr = '';
  monitor.stderr.setEncoding('utf8').on('data', (d) => (monitorErr += d));
  const passes = new Map();
  let sampling = true;
  const sampler = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    while (sampling) {
      const rows = (await c.query('SELECT passes, last_pass_at, last_pass_ms FROM health_loops')).rows;
      for (const r of rows) if (r.last_pass_at !== null) passes.set(Number(r.passes), { at: Number(r.last_pass_at), ms: Number(r.last_pass_ms) });
      await sleep(200);
    }
    await c.end();
  })();
  try {
    const startAt = Date.now() + 3000;
    const per = agents / procs;
    const outs = await Promise.all(
      Array.from({ length: procs }, (_, i) => spawnJson([join(here, 'bench-pg-worker.mjs'), url, 'fleet', String(i * per), String((i + 1) * per), '10000', String(seconds * 1000), String(startAt)])),
    );
    const lat = outs.flatMap((o) => o.latencies).sort((a, b) => a - b);
    const errors = outs.reduce((s, o) => s + o.errors, 0);
    const list = [...passes.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p).filter((p) => p.at >= startAt - everyMs);
    const gaps = list.slice(1).map((p, i) => p.at - list[i].at);
    return { lat, total: lat.length, errors, passes: list, gaps, everyMs, rate: lat.length / seconds };
  } finally {
    sampling = false;
    await sampler;
    monitor.kill('SIGTERM');
    await new Promise((r) => (monitor.exitCode !== null ? r() : monitor.once('exit', r)));
    if (monitor.exitCode !== 0 && monitor.exitCode !== null) console.log(`  (monitor exited ${monitor.exitCode}: ${monitorErr.trim().split('\n').pop()})`);
  }
}

/** `n` transitions (a new agent's first heartbeat) written here; how long until `agentctl history --follow --json` prints each. */
async function followLatency(bin, clusterUrl, n) {
  const url = await freshDatabase(clusterUrl);
  const follow = spawn(process.execPath, [bin, '--db', url, 'history', '--follow', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const seen = new Map();
  let buf = '';
  follow.stdout.setEncoding('utf8').on('data', (d) => {
    const now = performance.now();
    buf += d;
    let at;
    while ((at = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, at);
      buf = buf.slice(at + 1);
      const e = JSON.parse(line);
      if (e.toState === 'initializing' && !seen.has(e.agentName)) seen.set(e.agentName, now);
    }
  });
  const store = await openStore({ path: url });
  try {
    // Wait until the follower listens: a warm-up transition it prints.
    await store.heartbeat({ name: 'warm-up' }, Date.now());
    for (let i = 0; !seen.has('warm-up'); i++) {
      if (i > 600) throw new Error('history --follow never printed the warm-up transition');
      await sleep(50);
    }
    const sent = new Map();
    for (let i = 0; i < n; i++) {
      const name = `f${i}`;
      const start = performance.now();
      await store.heartbeat({ name }, Date.now());
      sent.set(name, { start, committed: performance.now() });
      await sleep(20);
    }
    for (let i = 0; seen.size < n + 1; i++) {
      if (i > 200) break;
      await sleep(50);
    }
    // From the commit (the write's answer; a notification can even come before it: 0), and from the write's start.
    const after = (name, t) => (seen.has(name) ? Math.max(0, seen.get(name) - t) : Infinity);
    const fromCommit = [...sent].map(([name, t]) => after(name, t.committed)).sort((a, b) => a - b);
    const fromStart = [...sent].map(([name, t]) => after(name, t.start)).sort((a, b) => a - b);
    return { fromCommit, fromStart };
  } finally {
    await store.close();
    follow.kill('SIGINT');
    await new Promise((r) => (follow.exitCode !== null ? r() : follow.once('exit', r)));
  }
}

export async function benchPg({ dir, root, goal, fmt, pct }) {
  const here = join(root, 'scripts');
  const bin = join(root, 'bin/agentctl');
  console.log('\nPostgreSQL beside SQLite (a throwaway cluster of this machine\'s PostgreSQL):');
  const cluster = await startCluster();
  try {
    const per = 1500;
    const lite = await eightProcesses(here, join(dir, 'pg-bench-8.db'), per);
    const pgr = await eightProcesses(here, await freshDatabase(cluster.url), per);
    for (const [label, r] of [['SQLite', lite], ['PostgreSQL', pgr]]) {
      console.log(`  8 processes on ${label.padEnd(10)}: ${fmt(r.rate)} heartbeats/s (${fmt(r.total)} counted; p50 ${fmt(pct(r.lat, 50), 2)} ms, p99 ${fmt(pct(r.lat, 99), 2)} ms)`);
    }
    // The floor both engines must clear: 1,000 heartbeats/s, what the fleet below (10,000 agents every 10 s) writes.
    for (const [label, r] of [['SQLite', lite], ['PostgreSQL', pgr]]) {
      goal(`8 processes on ${label}: ≥ 1,000 heartbeats/s (a fleet of 10,000 agents beating every 10 s)`, r.rate >= 1000, `${fmt(r.rate)}/s`);
    }

    const [liteBeat, pgBeat] = cliBeats(bin, [join(dir, 'pg-bench-cli.db'), await freshDatabase(cluster.url)], 15);
    console.log(`  agentctl heartbeat: PostgreSQL ${fmt(pgBeat, 1)} ms wall, SQLite ${fmt(liteBeat, 1)} ms (median of 15) → ${fmt(pgBeat / liteBeat, 2)}×`);
    // What a server costs on top of SQLite's file: loading pg, a TCP connection and its authentication, three statements.
    goal('agentctl heartbeat on PostgreSQL ≤ 1.5× on SQLite', pgBeat / liteBeat <= 1.5, `${fmt(pgBeat / liteBeat, 2)}×`);

    const small = await passTime(cluster.url, 1_000);
    const large = await passTime(cluster.url, 100_000);
    console.log(`  health pass on PostgreSQL (median of 21): 1,000 agents ${fmt(small, 2)} ms, 100,000 agents ${fmt(large, 2)} ms → ${fmt(large / small, 2)}×`);
    goal('PostgreSQL: a pass over 100,000 healthy agents ≤ 3× a pass over 1,000', large / small <= 3, `${fmt(large / small, 2)}×`);

    const seconds = Number(process.env.BENCH_PG_FLEET_SECONDS ?? 60);
    const f = await fleetUnderMonitor(here, bin, cluster.url, seconds);
    const p99 = pct(f.lat, 99);
    console.log(`  fleet of 10,000 agents beating every 10 s for ${seconds} s (4 processes), monitor --every 5s: ${fmt(f.rate)} heartbeats/s, ${fmt(f.total)} committed, ${f.errors} failed; p50 ${fmt(pct(f.lat, 50), 2)} ms, p99 ${fmt(p99, 2)} ms`);
    console.log(`    passes: ${f.passes.map((p) => `${fmt(p.ms, 0)} ms`).join(', ') || 'none'}; gaps between passes ${f.gaps.map((g) => fmt(g / 1000, 2)).join(', ')} s`);
    goal('PostgreSQL fleet: p99 heartbeat latency ≤ 50 ms at 1,000 heartbeats/s', p99 <= 50 && f.errors === 0, `${fmt(p99, 2)} ms`);
    // On time: at least one pass per interval of the run, none more than half an interval late, each shorter than the interval.
    const late = f.gaps.filter((g) => g > f.everyMs * 1.5).length;
    const onTime = f.passes.length >= Math.floor((seconds * 1000) / f.everyMs) && late === 0 && f.passes.every((p) => p.ms < f.everyMs);
    goal('PostgreSQL fleet: every monitor pass on time', onTime, `${f.passes.length} passes, ${late} late, longest ${fmt(Math.max(0, ...f.passes.map((p) => p.ms)), 0)} ms`);

    const { fromCommit, fromStart } = await followLatency(bin, cluster.url, 200);
    const fp99 = pct(fromCommit, 99);
    console.log(`  a transition reaches history --follow (200 transitions, to the printed line): from its commit p50 ${fmt(pct(fromCommit, 50), 1)} ms, p99 ${fmt(fp99, 1)} ms; from the write's start p50 ${fmt(pct(fromStart, 50), 1)} ms, p99 ${fmt(pct(fromStart, 99), 1)} ms`);
    goal('PostgreSQL: a transition reaches a follower within 100 ms p99', fp99 <= 100, `${fmt(fp99, 1)} ms`);
  } finally {
    cluster.stop();
  }
}
