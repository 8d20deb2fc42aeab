import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readdirSync, rmSync, readFileSync, existsSync, statSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { type Store, openStore } from '../src/store/store.js';
import { toAgentRecord } from '../src/store/rows.js';
import { isPostgresUrl } from '../src/store/engine.js';
import { APPLICATION_ID, MIGRATIONS, migrationSql } from '../src/store/sqlite/migrations.js';
import type { AgentRecord } from '../src/store/rows.js';
import { procStat } from '../src/core/host.js';
import { LEAK_MARK, OWN_PGID, describeProcs, descendantsOf, killGroup, killPid, listProcs, waitGone } from './processes.js';

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'agentctl');
export const DIST = join(ROOT, 'dist');

const dirs: string[] = [];
const children = new Set<ChildProcess>();
/** Pids whose process group is killed after the test (each is also looked up for its group when registered). */
const groups = new Set<number>();

// Every process a test starts carries this worker's mark (bare spawns inherit it from process.env, cleanEnv() adds
// it), so that what a test leaves behind is found after it, wherever it was reparented.
const RUN_MARK = process.env[LEAK_MARK]?.split(':')[0] || `standalone-${process.pid}`;
/** The mark of this test worker's processes: `RUN:PID`. */
export const WORKER_MARK = `${RUN_MARK}:${process.pid}`;
process.env[LEAK_MARK] = WORKER_MARK;

/**
 * Kills the process group of `pid` after the test, if still there: both the group `pid` leads (an agent that
 * `agentctl run` or `restart` started in a group of its own) and the group it is in now. Register a pid the moment
 * the test learns it (from the database row, the output), before any assertion can fail.
 */
export function killGroupAfter(pid: number | null | undefined): void {
  if (!pid) return;
  groups.add(pid);
  const pgid = Number(procStat(pid)?.[2]);
  if (pgid > 1 && pgid !== OWN_PGID) groups.add(pgid);
}

/** Registers for cleanup the groups of an agent's pid and of its supervisor (`agentctl run`), as its row gives them; returns the row. */
export function trackAgent(db: string, name: string): AgentRecord | undefined {
  const a = agentRecord(db, name);
  killGroupAfter(a?.pid);
  killGroupAfter(a?.supervisorPid);
  return a;
}

// While registered children run, their descendants (an `agentctl run` wrapper's child, which it starts in a group
// of its own) are registered as they appear, so a wrapper that dies first does not hide its child from the cleanup.
let tracker: NodeJS.Timeout | undefined;
function trackDescendants(): void {
  const live = [...children].filter((c) => c.pid && c.exitCode === null && c.signalCode === null).map((c) => c.pid!);
  if (live.length === 0) {
    clearInterval(tracker);
    tracker = undefined;
    return;
  }
  const procs = listProcs();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  for (const pid of descendantsOf(live, procs)) {
    const pgid = byPid.get(pid)?.pgid;
    if (pgid && pgid > 1 && pgid !== OWN_PGID) groups.add(pgid);
  }
}
function watchChildren(): void {
  if (!tracker) tracker = setInterval(trackDescendants, 100).unref();
}

/** A fresh temp directory, removed after the test. */
export function tempDir(prefix = 'agentctl-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/**
 * Which engine this test run's databases are on: 'sqlite' (files in temp directories) or 'postgres' (fresh databases
 * of the run's cluster), from AGENTCTL_TEST_ENGINE (the vitest project sets it: see vitest.config.ts).
 */
export const ENGINE: 'sqlite' | 'postgres' = process.env.AGENTCTL_TEST_ENGINE === 'postgres' ? 'postgres' : 'sqlite';
export const ON_POSTGRES = ENGINE === 'postgres';
/**
 * The environment of a CLI run that restarts agents (runs launch commands, signals processes). Running as root,
 * agentctl treats a PostgreSQL database as shared, since anyone with its credentials writes its rows, and refuses
 * to act for it (tested in test/pg/cli-postgres.test.ts); the restart tests run as root, so on PostgreSQL they
 * accept that risk as an operator would, with AGENTCTL_ALLOW_SHARED_DB=1. On SQLite nothing is added.
 */
export const ACTS: Record<string, string> = ON_POSTGRES && process.geteuid?.() === 0 ? { AGENTCTL_ALLOW_SHARED_DB: '1' } : {};

/** Databases of the cluster made by tempDb() in this test, dropped after it. */
const pgDatabases: string[] = [];

/** The cluster's superuser URL with another database (or its own, `postgres`). */
function pgUrl(database = 'postgres'): string {
  const base = process.env.AGENTCTL_TEST_PG;
  if (!base) throw new Error('AGENTCTL_TEST_PG is not set: run the PostgreSQL project through vitest (its global setup starts the cluster)');
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

/** psql on the cluster, synchronously (tests look at the database at any moment, as they read an SQLite file). */
export function psqlSync(url: string, sql: string): string {
  const r = spawnSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], { encoding: 'utf8', env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * A database that has no agentctl tables yet: on SQLite a path in a fresh temp directory (no file yet); on
 * PostgreSQL the URL of a new empty database of the run's cluster (dropped after the test).
 */
export function tempDb(): string {
  if (ON_POSTGRES) {
    const name = `t_${randomBytes(6).toString('hex')}`;
    psqlSync(pgUrl(), `CREATE DATABASE ${name} TEMPLATE template0`);
    pgDatabases.push(name);
    return pgUrl(name);
  }
  return join(tempDir(), 'agents.db');
}

/** Whether the database `db` has agentctl's tables (an SQLite file that exists; a PostgreSQL database with its tables). */
export function dbExists(db: string): boolean {
  if (isPostgresUrl(db)) return psqlSync(db, "SELECT to_regclass('agents') IS NOT NULL").trim() === 't';
  return existsSync(db);
}

/**
 * After each test: kill every registered child and process group, then fail the test if any process carrying this
 * worker's mark is still alive (a process the test started but never registered), naming it; it is killed too, so
 * the next test starts clean.
 */
afterEach(async () => {
  trackDescendants();
  for (const c of children) {
    if (c.pid) groups.add(c.pid);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  children.clear();
  clearInterval(tracker);
  tracker = undefined;
  for (const g of groups) killGroup(g);
  const registered = new Set(groups);
  groups.clear();
  const marked = listProcs(true).filter((p) => p.mark === WORKER_MARK && p.pid !== process.pid);
  // A registered group's processes may still be dying: only those outside every registered group are leaks.
  const leaked = marked.filter((p) => !registered.has(p.pgid) && !registered.has(p.pid));
  for (const p of leaked) if (!killGroup(p.pgid)) killPid(p.pid);
  for (const p of marked) killPid(p.pid);
  const left = await waitGone(marked.map((p) => p.pid));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  for (const name of pgDatabases.splice(0)) psqlSync(pgUrl(), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  if (leaked.length) throw new Error(`the test left ${plural(leaked.length, 'process', 'processes')} behind (killed now):\n${describeProcs(leaked)}`);
  if (left.length) throw new Error(`processes still alive 10 s after SIGKILL: ${left.join(', ')}`);
});

/** Environment for child processes: no inherited AGENTCTL_* or seed variables, no colours. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AGENTCTL_|DATABASE_PATH$|LOCK_TIMEOUT$|RETRY_ATTEMPTS$|BACKOFF_FACTOR$|HEARTBEAT_INTERVAL$|STALE_THRESHOLD$|LOG_LEVEL$|NO_COLOR$|FORCE_COLOR$)/.test(k)) continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete env[k];
  else env[k] = v;
  env[LEAK_MARK] = WORKER_MARK;
  return env;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  signal: NodeJS.Signals | null;
}

/** Runs the CLI as a child process, synchronously. */
export function cli(args: string[], opts: { db?: string; env?: Record<string, string | undefined>; input?: string; cwd?: string } = {}): CliResult {
  const full = opts.db ? ['--db', opts.db, ...args] : args;
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [BIN, ...full], {
    encoding: 'utf8',
    env: cleanEnv(opts.env),
    input: opts.input ?? '',
    cwd: opts.cwd ?? ROOT,
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

/** Runs the CLI and parses its stdout as JSON (with --json). */
export function cliJson<T = any>(args: string[], opts: Parameters<typeof cli>[1] = {}): T {
  const r = cli([...args, '--json'], opts);
  if (r.code !== 0) throw new Error(`agentctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** For children from start(): settles once their stdout and stderr have been read to the end. */
const drained = new WeakMap<ChildProcess, Promise<void>>();

/** Starts a long-running child (CLI or fixture) that is killed after the test if still running. */
export function start(command: string, args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}): ChildProcess & { output: () => string; errors: () => string } {
  // Its own process group, so that afterEach can kill it with everything it started.
  const child = spawn(command, args, { env: cleanEnv(opts.env), cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.add(child);
  killGroupAfter(child.pid);
  watchChildren();
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  drained.set(child, new Promise((r) => child.once('close', () => r())));
  return Object.assign(child, { output: () => out, errors: () => err });
}

/** Starts the CLI as a long-running child. */
export function startCli(args: string[], opts: { db?: string; env?: Record<string, string | undefined> } = {}) {
  return start(process.execPath, [BIN, ...(opts.db ? ['--db', opts.db] : []), ...args], opts);
}

/** Waits until `cond` is true, polling; fails with `what` after the deadline. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
}

/**
 * Resolves with the exit code (or signal) of a child. For a child from start(), also waits until what it wrote is
 * read: 'exit' can come before the last of its output, so a line written just before exiting could be missed. A
 * grandchild still holding the pipes open must not hang the test, so that wait is at most 2 s.
 */
export async function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const result =
    child.exitCode !== null || child.signalCode !== null
      ? { code: child.exitCode, signal: child.signalCode }
      : await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const reading = drained.get(child);
  if (reading) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([reading, new Promise<void>((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
  }
  return result;
}

/** sha256 of a file's bytes, or 'missing'. */
export function fileHash(path: string): string {
  return existsSync(path) ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'missing';
}

/** The JSON lines a child has printed so far (lines that are not JSON are skipped). */
export function jsonLines(child: { output: () => string }): any[] {
  return child
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

export const FIXTURES = join(ROOT, 'test', 'fixtures');

/** A fixture's path. */
export const fixture = (name: string): string => join(FIXTURES, name);

/** Waits `ms` milliseconds. */
export { setTimeout as sleep } from 'node:timers/promises';

/** Runs `fn` on a store opened on `db`, then closes it. */
export async function withStore<T>(db: string, fn: (s: Store) => T | Promise<T>, mode: 'create' | 'existing' = 'create'): Promise<T> {
  const s = await openStore({ path: db, mode });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/**
 * The agent's stored record; undefined if there is none, or no database yet (nothing is created). Read straight from
 * the file (synchronously, so that a test can look at any moment), as the store maps a row.
 */
export function agentRecord(db: string, name: string): AgentRecord | undefined {
  if (isPostgresUrl(db)) return pgAgentRecord(db, name);
  if (!existsSync(db)) return undefined;
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    conn.pragma('busy_timeout = 5000');
    // A file being created has no schema yet: no agent either.
    if (!conn.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'agents'").get()) return undefined;
    const row = conn.prepare('SELECT * FROM agents WHERE name = ?').get(name) as Record<string, unknown> | undefined;
    return row ? toAgentRecord(row) : undefined;
  } finally {
    conn.close();
  }
}

/** agentRecord on PostgreSQL: the row as JSON through psql, its JSON columns back to their text as the store reads them. */
function pgAgentRecord(db: string, name: string): AgentRecord | undefined {
  const lit = `'${name.replace(/'/g, "''")}'`;
  // A database being created has no tables yet: no agent either.
  if (psqlSync(db, "SELECT to_regclass('agents') IS NOT NULL").trim() !== 't') return undefined;
  const out = psqlSync(db, `SELECT row_to_json(a) FROM agents a WHERE name = ${lit}`).trim();
  if (!out) return undefined;
  const row = JSON.parse(out) as Record<string, unknown>;
  for (const [k, v] of Object.entries(row)) if (v !== null && typeof v === 'object') row[k] = JSON.stringify(v);
  return toAgentRecord(row);
}

/** The agent's history as `agentctl history --json` gives it (oldest first, up to 1,000 events). */
export function historyOf(db: string, name: string): any[] {
  return cliJson(['history', name, '--limit', '1000'], { db });
}

/** The setpriv arguments that run a command as nobody (we are root), or null when we are not root. */
export const AS_NOBODY = process.getuid?.() === 0 ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'] : null;

let readable: { root: string; bin: string; fixture: (name: string) => string } | undefined;

/** Makes `path` and everything under it readable (and directories searchable) by everyone. */
function openUp(path: string): void {
  const st = statSync(path);
  chmodSync(path, (st.mode & 0o7777) | (st.isDirectory() ? 0o755 : 0o444));
  if (st.isDirectory()) for (const e of readdirSync(path)) openUp(join(path, e));
}

/**
 * A copy of what the CLI and the fixtures need to run (bin, dist, the runtime packages, test/fixtures), in a temp
 * directory that every user may read, made once per test worker. A process dropped to nobody cannot read the checkout
 * when it lies in a private directory (a home directory with mode 700): run it from here instead.
 */
export function readableCopy(): { root: string; bin: string; fixture: (name: string) => string } {
  if (readable) return readable;
  const root = mkdtempSync(join(tmpdir(), 'agentctl-readable-'));
  process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  for (const part of ['bin', 'dist', 'package.json', join('test', 'fixtures')]) cpSync(join(ROOT, part), join(root, part), { recursive: true, dereference: true });
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  for (const [path, info] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || info.dev) continue;
    // better-sqlite3 ships its C sources and build objects: only its JavaScript and the addon are needed.
    const skip = path === 'node_modules/better-sqlite3' ? /\/(deps|src|obj(\.target)?|\.deps)(\/|$)/ : null;
    cpSync(join(ROOT, path), join(root, path), { recursive: true, dereference: true, filter: (src) => !skip || !skip.test(src.slice(join(ROOT, path).length)) });
  }
  openUp(root);
  readable = { root, bin: join(root, 'bin', 'agentctl'), fixture: (name: string) => join(root, 'test', 'fixtures', name) };
  return readable;
}

/**
 * Runs the CLI as an unprivileged user: as nobody through setpriv when we are root (permission bits stop nothing
 * for root), from readableCopy() so that a checkout in a private directory does not matter; as ourselves otherwise.
 */
export function cliAsNobody(args: string[], opts: { db?: string; env?: Record<string, string | undefined> } = {}): CliResult {
  const full = opts.db ? ['--db', opts.db, ...args] : args;
  const copy = AS_NOBODY ? readableCopy() : undefined;
  const argv = [...(AS_NOBODY ?? []), process.execPath, copy?.bin ?? BIN, ...full];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: cleanEnv(opts.env), input: '', cwd: copy?.root ?? ROOT, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

/** A database as an older build left it: the first `version` migrations applied, nothing after. */
export function databaseAtVersion(path: string, version: number): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  db.exec('BEGIN IMMEDIATE');
  for (const name of MIGRATIONS.slice(0, version)) db.exec(migrationSql(name));
  db.pragma(`application_id = ${APPLICATION_ID}`);
  db.pragma(`user_version = ${version}`);
  db.exec('COMMIT');
  return db;
}

/**
 * Statements on the database beside the code under test, on either engine (through the store's executor: `?`,
 * `:name` placeholders on both): for a test that ages rows or looks at a table directly.
 */
export async function sqlAll<T = Record<string, unknown>>(db: string, sql: string, args?: readonly unknown[] | Record<string, unknown>): Promise<T[]> {
  return withStore(db, (s) => s.sql.all<T>(sql, args), 'existing');
}

export async function sqlRun(db: string, sql: string, args?: readonly unknown[] | Record<string, unknown>): Promise<void> {
  await withStore(db, (s) => s.sql.run(sql, args), 'existing');
}

/** The first column of every row of `sql`. */
export async function sqlPluck<T = unknown>(db: string, sql: string, args?: readonly unknown[] | Record<string, unknown>): Promise<T[]> {
  return (await sqlAll(db, sql, args)).map((r) => Object.values(r)[0] as T);
}
