import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { type Store, openStore } from '../src/store/store.js';
import type { AgentRecord } from '../src/store/rows.js';

export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'agentctl');
export const DIST = join(ROOT, 'dist');

const dirs: string[] = [];
const children = new Set<ChildProcess>();
const groups = new Set<number>();

/** Kills process group `pgid` (e.g. a child `agentctl run` started in its own session) after the test, if still there. */
export function killGroupAfter(pgid: number | null | undefined): void {
  if (pgid) groups.add(pgid);
}

/** A fresh temp directory, removed after the test. */
export function tempDir(prefix = 'agentctl-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** A path for a database that does not exist yet, in a fresh temp directory. */
export function tempDb(): string {
  return join(tempDir(), 'agents.db');
}

afterEach(() => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (c.pid) groups.add(c.pid);
  }
  children.clear();
  for (const g of groups) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      // no such group any more
    }
  }
  groups.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
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
export function withStore<T>(db: string, fn: (s: Store) => T, mode: 'create' | 'existing' = 'create'): T {
  const s = openStore({ path: db, mode });
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

/** The agent's stored record; undefined if there is none, or no database yet (nothing is created). */
export function agentRecord(db: string, name: string): AgentRecord | undefined {
  return existsSync(db) ? withStore(db, (s) => s.getAgent(name), 'existing') : undefined;
}

/** The agent's history as `agentctl history --json` gives it (oldest first, up to 1,000 events). */
export function historyOf(db: string, name: string): any[] {
  return cliJson(['history', name, '--limit', '1000'], { db });
}
