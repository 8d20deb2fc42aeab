// SQLite against the build before the asynchronous store, in the same run: the commit before the store became
// asynchronous is checked out into a temporary git worktree (sharing this checkout's node_modules), built there, and
// the same workloads run against both builds, alternating between them round by round so that the machine's noise
// hits both alike. Each goal is this build's median time over the baseline's: ≤ 1.10×. The baseline's store is
// synchronous, so it is called without await; this build's is awaited, as its callers do. Without the git history
// (a shallow clone, an unpacked tarball) one line says the comparison was not run.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The last commit before the store became asynchronous (the parent of the first commit of that work on both branches). */
export const BASELINE_COMMIT = '88d1cc8';
const LIMIT = 1.1;

const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const git = (root, args) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** Why the baseline cannot be built here, or null. */
function unavailable(root) {
  try {
    // The checkout itself, not a repository it happens to be unpacked inside.
    if (realpathSync(git(root, ['rev-parse', '--show-toplevel'])) !== realpathSync(root)) return 'this directory is not a git checkout';
  } catch {
    return 'no git, or this directory is not a git checkout';
  }
  try {
    git(root, ['cat-file', '-e', `${BASELINE_COMMIT}^{commit}`]);
  } catch {
    return `commit ${BASELINE_COMMIT} is not in this clone's history (a shallow clone?)`;
  }
  const major = (v) => String(v).replace(/^[^0-9]*/, '').split('.')[0];
  const then = JSON.parse(git(root, ['show', `${BASELINE_COMMIT}:package.json`])).dependencies?.['better-sqlite3'];
  const now = JSON.parse(readFileSync(join(root, 'node_modules/better-sqlite3/package.json'), 'utf8')).version;
  if (!then || major(then) !== major(now)) return `the baseline wants better-sqlite3 ${then}, this checkout has ${now}`;
  return null;
}

/** Checks the baseline out into `dir` with this checkout's node_modules and builds it as its own npm run build did. */
function buildBaseline(root, dir) {
  git(root, ['worktree', 'add', '--detach', dir, BASELINE_COMMIT]);
  const modules = realpathSync(join(root, 'node_modules'));
  symlinkSync(modules, join(dir, 'node_modules'));
  const node = (args) => execFileSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  node([join(modules, 'typescript/bin/tsc'), '-p', 'tsconfig.json']);
  if (existsSync(join(dir, 'scripts/copy-assets.mjs'))) node(['scripts/copy-assets.mjs']);
  // The heartbeat fast path's bundle, as the baseline's build script made it.
  node([join(modules, 'rolldown/bin/cli.mjs'), 'dist/cli/fast.js', '--file', 'dist/fast-heartbeat.cjs', '--format', 'cjs', '--platform', 'node', '--external', 'better-sqlite3', '--log-level', 'warn']);
}

/** The dist modules a workload needs, of the build at `root`. */
async function load(root) {
  const at = (p) => import(pathToFileURL(join(root, 'dist', p)).href);
  const [index, protocol, store] = await Promise.all([at('index.js'), at('store/protocol.js'), at('store/store.js')]);
  return { root, openStore: index.openStore, checkHealth: index.checkHealth, HEARTBEAT_SQL: protocol.HEARTBEAT_SQL, registerBindings: store.registerBindings };
}

/** A build and how its store is called: `call(x)` is the store's answer, awaited where the build returns Promises. */
function builds(base, head) {
  return [
    { label: 'baseline', ...base, sync: true, call: (x) => x },
    { label: 'this build', ...head, sync: false, call: async (x) => await x },
  ];
}

/** Runs `round(build)` `rounds` times for each build, alternating A/B/A/B; returns the samples of each. */
async function alternate(list, rounds, round) {
  const samples = list.map(() => []);
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first too, so that neither always follows the other.
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) samples[k].push(await round(list[k], r));
  }
  return samples;
}

/** Store.heartbeat one after another on 100 agents: µs per heartbeat, per round. */
async function heartbeats(list, dir) {
  const stores = [];
  for (const b of list) {
    const store = await b.openStore({ path: join(dir, `inproc-${stores.length}.db`) });
    for (let i = 0; i < 100; i++) await b.call(store.heartbeat({ name: `a${i}` }, Date.now()));
    stores.push(store);
  }
  const n = 2000;
  const round = async (b) => {
    const store = stores[list.indexOf(b)];
    const t0 = performance.now();
    // Each build called as its callers call it: the baseline returns its answer, this build a Promise.
    if (b.sync) for (let i = 0; i < n; i++) store.heartbeat({ name: `a${i % 100}`, progress: i }, Date.now());
    else for (let i = 0; i < n; i++) await store.heartbeat({ name: `a${i % 100}`, progress: i }, Date.now());
    return ((performance.now() - t0) * 1000) / n;
  };
  await alternate(list, 2, round); // warm-up
  const samples = await alternate(list, 31, round);
  for (let k = 0; k < list.length; k++) await list[k].call(stores[k].close());
  return samples;
}

/** Writes `n` registered agents that all beat just now (healthy) into the SQLite connection `db`, in one transaction. */
export function insertHealthyAgents(db, n) {
  const now = Date.now();
  const insert = db.prepare(
    `INSERT INTO agents (name, state, state_since, state_reason, created_at, started_at, updated_at, last_heartbeat_at, heartbeat_seq)
     VALUES (?, 'active', ?, 'first heartbeat', ?, ?, ?, ?, 1)`,
  );
  db.transaction(() => {
    for (let i = 0; i < n; i++) insert.run(`agent-${i}`, now, now, now, now, now);
  })();
}

/** A health pass (checkHealth) over `n` healthy agents: ms per pass. */
async function healthPasses(list, dir, n) {
  const stores = [];
  for (const b of list) {
    const store = await b.openStore({ path: join(dir, `fleet-${stores.length}.db`) });
    insertHealthyAgents(store.db, n);
    await b.call(b.checkHealth(store, Date.now())); // warm-up
    stores.push(store);
  }
  const samples = await alternate(list, 41, async (b) => {
    const store = stores[list.indexOf(b)];
    const t = performance.now();
    const r = b.sync ? b.checkHealth(store, Date.now()) : await b.checkHealth(store, Date.now());
    const ms = performance.now() - t;
    if (r.transitions.length) throw new Error(`a healthy fleet had ${r.transitions.length} transitions`);
    return ms;
  });
  for (let k = 0; k < list.length; k++) await list[k].call(stores[k].close());
  return samples;
}

/**
 * `n` agents through the documented register and heartbeat SQL (as the read-scale bench writes them), by the
 * baseline; this build reads a copy of that file, migrated by opening it as a writer, so both read the same rows.
 */
async function readFleet(list, dir, n) {
  const [base, head] = list;
  const path = join(dir, `reads-${n}-0.db`);
  const store = await base.openStore({ path });
  const register = store.db.prepare(store.registerSql);
  const beat = store.db.prepare(base.HEARTBEAT_SQL);
  const now = Date.now();
  store.db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const name = `agent-${String(i).padStart(6, '0')}`;
      register.run(base.registerBindings({ name, group: i % 10 === 0 ? 'batch' : null, intervalMs: 3_600_000, offlineAfterMs: 4 * 3_600_000 }, now));
      beat.run({ name, status: i % 100 === 7 ? 'error' : 'ok', message: `working on job ${i}`, metadata: JSON.stringify({ jobs: i % 17, queue: `q${i % 5}` }), progress: i, now });
    }
  })();
  store.close();
  const copy = join(dir, `reads-${n}-1.db`);
  copyFileSync(path, copy);
  await (await head.openStore({ path: copy })).close();
  return [path, copy];
}

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

/**
 * Wall time (ms) of one `agentctl --db DB ...args` of the build; its CPU time (user + system, from /usr/bin/time
 * where there is one) is added to `cpu`, printed beside the wall time as it wanders less on a loaded machine.
 */
function cli(b, db, args, cpu) {
  const argv = [process.execPath, join(b.root, 'bin/agentctl'), '--db', db, ...args];
  const t = process.hrtime.bigint();
  const r = TIME ? spawnSync(TIME, ['-f', '%U %S', ...argv], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' }) : spawnSync(argv[0], argv.slice(1), { stdio: 'ignore' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${b.label}: agentctl ${args.join(' ')} exited ${r.status}`);
  if (TIME && cpu) {
    const [user, sys] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
    cpu.push((user + sys) * 1000);
  }
  return ms;
}

/** The CLI figure: wall times alternating, and the median CPU time of each build. */
async function cliFigure(list, dbs, args, rounds) {
  const cpu = list.map(() => []);
  const wall = await alternate(list, rounds, (b) => cli(b, dbs[list.indexOf(b)], args, cpu[list.indexOf(b)]));
  return { wall, cpu: cpu.every((c) => c.length) ? cpu.map(med) : null };
}

export async function benchBaseline({ dir, root, goal, fmt }) {
  console.log(`\nSQLite against the build before the asynchronous store (commit ${BASELINE_COMMIT}), alternating, in this run:`);
  const why = unavailable(root);
  if (why) {
    console.log(`  not run: ${why}`);
    return;
  }
  const tmp = mkdtempSync(join(tmpdir(), 'agentctl-baseline-'));
  const src = join(tmp, 'src');
  try {
    try {
      buildBaseline(root, src);
    } catch (err) {
      console.log(`  not run: the baseline did not build (${String(err.stderr ?? err.message).trim().split('\n')[0]})`);
      return;
    }
    const work = join(tmp, 'db');
    mkdirSync(work);
    const list = builds(await load(src), await load(root));
    const rows = [];
    // The ratio is the median of each round's (this build / baseline): the two runs of a round, one just after the
    // other, meet the same machine, so a burst of load elsewhere moves both.
    const compare = (label, samples, unit, digits, cpu = null) => {
      const [a, b] = samples.map(med);
      const ratio = med(samples[1].map((x, i) => x / samples[0][i]));
      rows.push({ label, ratio });
      const cpuText = cpu ? `; CPU ${fmt(cpu[0], 0)} ms vs ${fmt(cpu[1], 0)} ms → ${fmt(cpu[1] / cpu[0], 2)}×` : '';
      console.log(`  ${label.padEnd(46)} baseline ${fmt(a, digits).padStart(7)} ${unit}, this build ${fmt(b, digits).padStart(7)} ${unit} → ${fmt(ratio, 2)}×${cpuText}`);
    };
    const compareCli = (label, f) => compare(label, f.wall, 'ms', 1, f.cpu);

    compare('in-process Store.heartbeat (2,000 a round, of 31)', await heartbeats(list, work), 'µs', 1);
    compare('health pass, 100,000 healthy agents (of 41)', await healthPasses(list, work, 100_000), 'ms', 2);
    const beatDbs = list.map((b, k) => join(work, `cli-${k}.db`));
    list.forEach((b, k) => cli(b, beatDbs[k], ['heartbeat', 'cli'])); // registers it
    compareCli('agentctl heartbeat wall time (of 31)', await cliFigure(list, beatDbs, ['heartbeat', 'cli'], 31));
    const fleet = await readFleet(list, work, 10_000);
    list.forEach((b, k) => cli(b, fleet[k], ['status'])); // warm the page cache
    compareCli('agentctl status, 10,000 agents (of 15)', await cliFigure(list, fleet, ['status'], 15));
    compareCli('agentctl status --json, 10,000 agents (of 15)', await cliFigure(list, fleet, ['status', '--json'], 15));

    for (const r of rows) goal(`SQLite: ${r.label.replace(/ \(.*\)$/, '')} ≤ ${fmt(LIMIT, 2)}× the build before the asynchronous store`, r.ratio <= LIMIT, `${fmt(r.ratio, 2)}×`);
  } finally {
    try {
      git(root, ['worktree', 'remove', '--force', src]);
    } catch {
      /* never added */
    }
    rmSync(tmp, { recursive: true, force: true });
    try {
      git(root, ['worktree', 'prune']);
    } catch {
      /* nothing to prune */
    }
  }
}
