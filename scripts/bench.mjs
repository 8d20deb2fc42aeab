// npm run bench: agentctl's speed figures. Every goal compares two things measured in this run (a baseline such as
// the raw prepared heartbeat statement, `node -e 0` or one `agentctl heartbeat`), and the ratio is printed: figures
// on a shared machine wander, and a machine that starts Node slower is slower at both, so ratios hold anywhere.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HeartbeatAgent, checkHealth, openStore } from '../dist/index.js';
import { HEARTBEAT_SQL } from '../dist/store/protocol.js';
import { registerBindings } from '../dist/store/store.js';
import { benchDiagnostics } from './bench-diagnostics.mjs';
import { insertHealthyAgents } from './bench-baseline.mjs';
import { benchDashboard } from './bench-dashboard.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const dir = mkdtempSync(join(tmpdir(), 'agentctl-bench-'));
const results = [];

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
function goal(label, ok, detail) {
  results.push({ label, ok });
  console.log(`  goal ${ok ? 'MET   ' : 'MISSED'} ${label}${detail ? ` (${detail})` : ''}`);
}

/** The raw prepared heartbeat statement, run `n` times on `store` for agent `name`: the baseline of the write rate. */
function rawRate(store, name, n) {
  const stmt = store.db.prepare(HEARTBEAT_SQL);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) stmt.run({ name, status: null, message: null, metadata: null, progress: i, now: Date.now() });
  return (n / (performance.now() - t0)) * 1000;
}

/** Store.heartbeat against the raw statement, interleaved in rounds so that both see the same machine. */
async function inProcess() {
  const db = join(dir, 'inproc.db');
  const store = await openStore({ path: db });
  const agents = 100;
  for (let i = 0; i < agents; i++) await store.heartbeat({ name: `a${i}` }, Date.now());
  const n = 10_000;
  const lat = [];
  const raws = [];
  const rates = [];
  rawRate(store, 'a0', 2000); // warm-up
  for (let round = 0; round < 5; round++) {
    raws.push(rawRate(store, `a${round}`, n));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      await store.heartbeat({ name: `a${i % agents}`, progress: i }, Date.now());
      lat.push(performance.now() - s);
    }
    rates.push((n / (performance.now() - t0)) * 1000);
  }
  await store.close();
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const sorted = lat.sort((a, b) => a - b);
  const rate = med(rates);
  const raw = med(raws);
  console.log(`in-process heartbeats: ${fmt(rate)}/s over ${fmt(5 * n)} (p50 ${fmt(pct(sorted, 50) * 1000)} µs, p99 ${fmt(pct(sorted, 99) * 1000)} µs); raw prepared statement ${fmt(raw)}/s`);
  goal('in-process Store.heartbeat ≥ 0.9× the raw prepared statement', rate / raw >= 0.9, `${fmt(rate / raw, 2)}×`);
  return raw;
}

async function processes(mode, perProcess) {
  const db = join(dir, `${mode}.db`);
  await (await openStore({ path: db })).close();
  const startAt = Date.now() + 1500;
  const outs = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [join(here, 'bench-worker.mjs'), db, `p${i}`, String(perProcess), String(startAt), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`bench worker exited ${code}`))));
      }),
    ),
  );
  const end = Math.max(...outs.map((o) => o.end));
  const total = outs.reduce((s, o) => s + o.count, 0);
  const rate = (total / (end - startAt)) * 1000;
  const lat = outs.flatMap((o) => o.latencies).sort((a, b) => a - b);
  const check = await openStore({ path: db });
  const counted = check.db.prepare('SELECT SUM(heartbeat_seq) AS n FROM agents').get().n - 8;
  await check.close();
  console.log(`8 processes, ${mode === 'plain' ? "SQLite's locking" : 'proper-lockfile lock per write'}: ${fmt(rate)}/s aggregate (${fmt(total)} heartbeats, ${fmt(counted)} counted; p50 ${fmt(pct(lat, 50), 2)} ms, p99 ${fmt(pct(lat, 99), 2)} ms)`);
  if (counted !== total) throw new Error(`lost heartbeats: ${total} sent, ${counted} counted`);
  return rate;
}

function startup() {
  const db = join(dir, 'cli.db');
  spawnSync(process.execPath, [join(root, 'bin/agentctl'), '--db', db, 'heartbeat', 'cli'], { stdio: 'ignore' });
  const runs = { node: [process.execPath, '-e', '0'], agentctl: [process.execPath, join(root, 'bin/agentctl'), '--db', db, 'heartbeat', 'cli'] };
  const times = { node: [], agentctl: [] };
  for (let i = 0; i < 30; i++) {
    for (const [k, argv] of Object.entries(runs)) {
      const t = process.hrtime.bigint();
      const r = spawnSync(argv[0], argv.slice(1), { stdio: 'ignore' });
      times[k].push(Number(process.hrtime.bigint() - t) / 1e6);
      if (r.status !== 0) throw new Error(`${k} exited ${r.status}`);
    }
  }
  const med = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const node = med(times.node);
  const cli = med(times.agentctl);
  console.log(`agentctl heartbeat: ${fmt(cli, 1)} ms wall (median of 30) vs node -e 0: ${fmt(node, 1)} ms → ${fmt(cli / node, 2)}×`);
  goal('agentctl heartbeat ≤ 1.3× bare node start-up', cli / node <= 1.3, `${fmt(cli / node, 2)}×`);
  return node;
}

/** Heartbeats through HeartbeatAgent.beat() (what its timer calls), against raw Store.heartbeat in the same run. */
async function agentBeats(rawPrepared) {
  const db = join(dir, 'agent.db');
  const n = 20_000;
  const store = await openStore({ path: db });
  await store.heartbeat({ name: 'raw' }, Date.now());
  let t0 = performance.now();
  for (let i = 0; i < n; i++) await store.heartbeat({ name: 'raw', progress: i }, Date.now());
  const raw = (n / (performance.now() - t0)) * 1000;
  await store.close();
  const agent = new HeartbeatAgent({ name: 'lib', db, interval: '1h', handleSignals: false });
  await agent.start();
  t0 = performance.now();
  let ok = 0;
  for (let i = 0; i < n; i++) {
    agent.progress(i);
    if (await agent.beat()) ok++;
  }
  const rate = (n / (performance.now() - t0)) * 1000;
  await agent.stop();
  if (ok !== n) throw new Error(`HeartbeatAgent: ${n - ok} of ${n} heartbeats failed`);
  console.log(`HeartbeatAgent heartbeats: ${fmt(rate)}/s over ${fmt(n)} (raw Store.heartbeat ${fmt(raw)}/s → ${fmt(rate / raw, 2)}×)`);
  goal('HeartbeatAgent ≥ 0.4× the raw prepared statement', rate / rawPrepared >= 0.4, `${fmt(rate / rawPrepared, 2)}×`);
  goal('HeartbeatAgent ≥ 0.5× raw Store.heartbeat', rate / raw >= 0.5, `${fmt(rate / raw, 2)}×`);
}

const TICKS = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on Linux
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS; // utime + stime of the process itself, not its children
}

/**
 * CPU time of `agentctl run` wrapping a sleeping child, over a window after start-up, scaled to an hour; against
 * an idle node process measured over the same window. Heartbeats every second (30× the default rate), so the
 * figure is an upper bound for the default 30 s interval.
 */
async function runOverhead(nodeStartMs) {
  const db = join(dir, 'run.db');
  const windowMs = 10_000;
  const wrapper = spawn(process.execPath, [join(root, 'bin/agentctl'), '--db', db, 'run', '--name', 'bench-run', '--interval', '1s', '--', 'sleep', '60'], { stdio: 'ignore' });
  const idle = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 2000)); // past start-up
  const w0 = cpuMs(wrapper.pid);
  const i0 = cpuMs(idle.pid);
  await new Promise((r) => setTimeout(r, windowMs));
  const w = cpuMs(wrapper.pid) - w0;
  const i = cpuMs(idle.pid) - i0;
  idle.kill('SIGKILL');
  wrapper.kill('SIGTERM');
  await new Promise((r) => wrapper.once('exit', r));
  const perHour = (ms) => (ms / windowMs) * 3600; // CPU seconds per hour
  console.log(`agentctl run overhead: ${fmt(perHour(w), 1)} s CPU per hour of a sleeping child (1 s heartbeats; ${fmt(w)} ms over ${windowMs / 1000} s), idle node ${fmt(perHour(i), 1)} s/h`);
  // Per heartbeat (one a second), against what starting `node -e 0` costs on this machine (36 s/h was the goal on
  // a machine where that took about 40 ms).
  const perBeat = w / (windowMs / 1000);
  goal('agentctl run: CPU per 1 s heartbeat ≤ 0.25× a `node -e 0` start-up', perBeat / nodeStartMs <= 0.25, `${fmt(perBeat, 1)} ms vs ${fmt(nodeStartMs, 1)} ms → ${fmt(perBeat / nodeStartMs, 2)}×`);
}

/** A database with `n` registered agents that all beat just now (healthy), written in one transaction. */
async function healthyFleet(n) {
  const store = await openStore({ path: join(dir, `fleet-${n}.db`) });
  insertHealthyAgents(store.db, n);
  return store;
}

/** Median wall time of one health pass (checkHealth) over a healthy fleet of `n` agents, after a warm-up pass. */
async function passTime(n) {
  const store = await healthyFleet(n);
  await checkHealth(store, Date.now());
  const times = [];
  for (let i = 0; i < 41; i++) {
    const t = performance.now();
    const r = await checkHealth(store, Date.now());
    times.push(performance.now() - t);
    if (r.transitions.length) throw new Error(`a healthy fleet had ${r.transitions.length} transitions`);
  }
  await store.close();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function healthPass() {
  const small = await passTime(1_000);
  const large = await passTime(100_000);
  const ratio = large / small;
  console.log(`health pass over healthy agents (median of 41): 1,000 agents ${fmt(small, 3)} ms, 100,000 agents ${fmt(large, 3)} ms → ${fmt(ratio, 2)}×`);
  goal('a pass over 100,000 healthy agents ≤ 3× a pass over 1,000 (it costs what is due)', ratio <= 3, `${fmt(ratio, 2)}×`);
}

// ---- reads at scale ----

const BIN = join(root, 'bin/agentctl');
const READS = [
  ['status', ['status']],
  ['status --json', ['status', '--json']],
  ['check', ['check']],
  ['map', ['map']],
  ['metrics', ['metrics']],
  ['monitor --once', ['monitor', '--once']],
];

/**
 * A fleet of `n` agents written through the documented register and heartbeat SQL in one transaction: contracts of
 * 1 h so every agent stays active, a message and metadata on each, a group on some, and a few in error.
 */
async function sqlFleet(n) {
  const path = join(dir, `reads-${n}.db`);
  const store = await openStore({ path });
  const register = store.db.prepare(store.registerSql);
  const beat = store.db.prepare(HEARTBEAT_SQL);
  const now = Date.now();
  store.db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const name = `agent-${String(i).padStart(6, '0')}`;
      register.run(registerBindings({ name, group: i % 10 === 0 ? 'batch' : null, intervalMs: 3_600_000, offlineAfterMs: 4 * 3_600_000 }, now));
      beat.run({ name, status: i % 100 === 7 ? 'error' : 'ok', message: `working on job ${i}`, metadata: JSON.stringify({ jobs: i % 17, queue: `q${i % 5}` }), progress: i, now });
    }
  })();
  await store.close();
  return path;
}

/**
 * Median wall time and CPU time (ms) and the largest peak RSS (KiB), from /usr/bin/time, of `runs` runs of agentctl
 * `args`. The goals are on wall time; CPU time is printed beside it, as it wanders less on a loaded machine.
 */
function measure(db, args, runs) {
  const times = [];
  const cpu = [];
  let rss = 0;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', process.execPath, BIN, '--db', db, ...args], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 26 });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    // check exits 1 for the agents in error; anything above that is a failure.
    if (r.status > (args[0] === 'check' ? 1 : 0)) throw new Error(`agentctl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    const [kib, user, sys] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
    rss = Math.max(rss, kib);
    cpu.push((user + sys) * 1000);
  }
  const med = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return { ms: med(times), cpuMs: med(cpu), rssKiB: rss };
}

/** The read-scale table: each read command's time as a ratio to one `agentctl heartbeat` on the same file, and its peak RSS. */
async function readScale() {
  const sizes = [1_000, 10_000, 100_000];
  const table = {};
  console.log('\nreads at scale (median wall time as a ratio to one `agentctl heartbeat` on the same database; peak RSS):');
  for (const n of sizes) {
    const t0 = performance.now();
    const db = await sqlFleet(n);
    const built = performance.now() - t0;
    const runs = n >= 100_000 ? 3 : 5;
    measure(db, ['status', '--json'], 1); // warm the page cache
    const hb = measure(db, ['heartbeat', 'agent-000000'], 9);
    const beat = hb.ms;
    table[n] = { beat };
    for (const [label, args] of READS) table[n][label] = measure(db, args, runs);
    console.log(`  ${fmt(n)} agents (built in ${fmt(built / 1000, 1)} s; one heartbeat ${fmt(beat, 1)} ms wall, ${fmt(hb.cpuMs, 0)} ms CPU):`);
    for (const [label] of READS) {
      const m = table[n][label];
      const cpuRatio = hb.cpuMs > 0 ? `${fmt(m.cpuMs / hb.cpuMs, 1)}×` : '-';
      console.log(`    ${label.padEnd(15)} ${fmt(m.ms, 0).padStart(7)} ms  ${fmt(m.ms / beat, 1).padStart(6)}×   CPU ${fmt(m.cpuMs, 0).padStart(6)} ms ${cpuRatio.padStart(6)}   peak RSS ${fmt(m.rssKiB / 1024, 0).padStart(4)} MiB`);
    }
    rmSync(db, { force: true });
    rmSync(`${db}-wal`, { force: true });
    rmSync(`${db}-shm`, { force: true });
  }
  const ratio = (n, label) => table[n][label].ms / table[n].beat;
  const limits10k = { 'status --json': 3, status: 4, check: 2, map: 3, metrics: 3 };
  for (const [label, limit] of Object.entries(limits10k)) {
    goal(`at 10,000 agents \`${label}\` ≤ ${limit}× one heartbeat`, ratio(10_000, label) <= limit, `${fmt(ratio(10_000, label), 2)}×`);
  }
  for (const [label] of READS) {
    const growth = table[100_000][label].ms / table[10_000][label].ms;
    goal(`\`${label}\` grows ≤ 12× from 10,000 to 100,000 agents`, growth <= 12, `${fmt(growth, 1)}×`);
  }
  for (const [label] of READS) {
    const mib = table[100_000][label].rssKiB / 1024;
    goal(`at 100,000 agents \`${label}\` peak RSS ≤ 200 MiB`, mib <= 200, `${fmt(mib, 0)} MiB`);
  }
}

try {
  console.log(`agentctl bench · node ${process.version} · ${new Date().toISOString()}\n`);
  // `node scripts/bench.mjs reads`: only the read-scale table (after `npm run build`).
  if (process.argv[2] === 'reads') {
    readScale();
    process.exitCode = results.some((r) => !r.ok) ? 1 : 0;
  } else if (process.argv[2] === 'http') {
    // `node scripts/bench.mjs http`: only the HTTP ping bench.
    await (await import('./bench-http.mjs')).benchHttp({ dir, root, goal, fmt, pct });
    process.exitCode = results.some((r) => !r.ok) ? 1 : 0;
  } else if (process.argv[2] === 'baseline') {
    // `node scripts/bench.mjs baseline`: only SQLite against the build before the asynchronous store.
    await (await import('./bench-baseline.mjs')).benchBaseline({ dir, root, goal, fmt });
    process.exitCode = results.some((r) => !r.ok) ? 1 : 0;
  } else if (process.argv[2] === 'pg') {
    // `node scripts/bench.mjs pg`: only PostgreSQL beside SQLite (a throwaway cluster of this machine's PostgreSQL).
    await (await import('./bench-pg.mjs')).benchPg({ dir, root, goal, fmt, pct });
    process.exitCode = results.some((r) => !r.ok) ? 1 : 0;
  } else {
  await healthPass();
  const rawPrepared = await inProcess();
  const plain = await processes('plain', 5000);
  goal('8-process aggregate ≥ 0.5× one process running the raw prepared statement', plain / rawPrepared >= 0.5, `${fmt(plain / rawPrepared, 2)}×`);
  const locked = await processes('lockfile', 250);
  console.log(`ratio SQLite locking / lock per write: ${fmt(plain / locked, 1)}×`);
  goal('8-process aggregate ≥ 10× the lock-per-write baseline', plain / locked >= 10, `${fmt(plain / locked, 1)}×`);
  const nodeStart = startup();
  await benchDiagnostics(dir, join(root, 'bin/agentctl'));
  readScale();
  await agentBeats(rawPrepared);
  await runOverhead(nodeStart);
  await benchDashboard(dir, join(root, 'bin/agentctl'), goal);
  await (await import('./bench-http.mjs')).benchHttp({ dir, root, goal, fmt, pct });
  await (await import('./bench-baseline.mjs')).benchBaseline({ dir, root, goal, fmt });
  await (await import('./bench-pg.mjs')).benchPg({ dir, root, goal, fmt, pct });
  }
  const missed = results.filter((r) => !r.ok).length;
  console.log(`\n${results.length - missed} of ${results.length} goals met`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
