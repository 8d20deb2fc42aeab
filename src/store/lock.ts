import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { LockCompromisedError, LockHeldError, OperationError } from '../errors.js';
import { hostName, pidExists, processStartTime } from '../core/host.js';

/**
 * The exclusive lock beside the database, for what SQLite's own locking cannot guard: one health loop at a time,
 * and operations on the file itself (migrations by hand, db-check --fix, backup, purge, restart).
 * proper-lockfile keeps a directory `<db>.<name>.lock` whose mtime it refreshes; a holder that dies stops refreshing,
 * and after `staleMs` the next caller takes the lock over. An `<db>.<name>.owner` file says who holds it.
 */
export interface LockOptions {
  /** Names the lock and the operation in messages: 'monitor', 'maintenance'. */
  name: string;
  /** After this long without a refresh the lock counts as abandoned (default 30 s: far above the 5 s busy timeout). */
  staleMs?: number;
  /** How many times to try again while another live process holds it (default 0: fail at once). */
  retries?: number;
  /** Called when the lock was abandoned by a dead holder and is taken over. */
  onTakeover?: (info: LockOwner | null, ageMs: number) => void;
  /** Called before waiting out the stale period of a lock whose holder is proven dead (how long, at most). */
  onWait?: (info: LockOwner, waitMs: number) => void;
}

export interface LockOwner {
  pid: number;
  /** The holder's start time (clock ticks after boot), so that a recycled pid is not taken for it. */
  pidStartTime?: number | null;
  host: string | null;
  acquiredAt: number;
  operation: string;
}

export interface LockHandle {
  /** Aborted if the lock is compromised (its directory removed or taken over); long operations check it between steps. */
  signal: AbortSignal;
  lockPath: string;
}

/** The paths of a named lock of the database at `dbPath`. */
export function lockPaths(dbPath: string, name: string): { lockPath: string; ownerPath: string } {
  return { lockPath: `${dbPath}.${name}.lock`, ownerPath: `${dbPath}.${name}.owner` };
}

/** What proper-lockfile locks: one pseudo-file per lock name (it keys its own bookkeeping by this path). */
function lockTarget(dbPath: string, name: string): string {
  return `${dbPath}.${name}`;
}

/** Who holds (or last held) the named lock, and how old its last refresh is; null if it is not held. */
export function inspectLock(dbPath: string, name: string): { owner: LockOwner | null; ageMs: number } | null {
  const { lockPath, ownerPath } = lockPaths(dbPath, name);
  let mtime: number;
  try {
    mtime = statSync(lockPath).mtimeMs;
  } catch {
    return null;
  }
  return { owner: readOwner(ownerPath), ageMs: Date.now() - mtime };
}

/** The owner file's record, or null when it is missing or unreadable. */
function readOwner(ownerPath: string): LockOwner | null {
  try {
    return JSON.parse(readFileSync(ownerPath, 'utf8')) as LockOwner;
  } catch {
    return null;
  }
}

/** True when the lock's holder ran on this host and its process is gone (or its pid now names another process). */
export function holderIsDead(owner: LockOwner): boolean {
  if (owner.host !== hostName()) return false;
  const start = processStartTime(owner.pid);
  if (start === null) return !pidExists(owner.pid);
  return owner.pidStartTime != null && start !== owner.pidStartTime;
}

function inspectOwner(ownerPath: string): { owner: LockOwner | null; ageMs: number } | null {
  let mtime: number;
  try {
    mtime = statSync(ownerPath).mtimeMs;
  } catch {
    return null;
  }
  return { owner: readOwner(ownerPath), ageMs: Date.now() - mtime };
}

/**
 * Runs `fn` holding the named exclusive lock. Throws LockHeldError when another live process holds it. If the lock
 * is compromised while `fn` runs, `handle.signal` aborts and the result is a LockCompromisedError instead of a crash.
 */
export async function withExclusiveLock<T>(dbPath: string, opts: LockOptions, fn: (handle: LockHandle) => Promise<T>): Promise<T> {
  const staleMs = Math.max(2000, opts.staleMs ?? 30_000);
  const { lockPath, ownerPath } = lockPaths(dbPath, opts.name);
  const controller = new AbortController();
  let retries: import('proper-lockfile').LockOptions['retries'] = { retries: opts.retries ?? 0, factor: 1.5, minTimeout: 100, maxTimeout: 2000, randomize: true };
  const held = inspectLock(dbPath, opts.name);
  if (held?.owner && holderIsDead(held.owner)) {
    // Proven dead (its pid is gone or belongs to another process): wait out the stale period instead of failing.
    const waitMs = Math.max(0, staleMs - held.ageMs) + 1000;
    opts.onWait?.(held.owner, waitMs);
    retries = { retries: Math.ceil(waitMs / 250) + 4, factor: 1, minTimeout: 250, maxTimeout: 250 };
  }
  let release: () => Promise<void>;
  try {
    // Loaded here, not at the top: proper-lockfile installs signal-exit's SIGINT/SIGTERM listeners when it loads,
    // and a process that merely imports agentctl (a HeartbeatAgent) must keep its own signal behaviour.
    const { default: lockfile } = await import('proper-lockfile');
    release = await lockfile.lock(lockTarget(dbPath, opts.name), {
      lockfilePath: lockPath,
      realpath: false,
      stale: staleMs,
      update: Math.floor(staleMs / 3),
      retries,
      onCompromised: (err) => controller.abort(new LockCompromisedError(lockPath, { cause: err })),
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') throw new LockHeldError(opts.name, lockPath, { cause: err });
    throw new OperationError(`cannot take the ${opts.name} lock ${lockPath}: ${(err as Error).message}`, { cause: err });
  }
  // A clean release removes the owner file: finding one means its holder died holding the lock, and we took it over.
  const previous = inspectOwner(ownerPath);
  if (previous) opts.onTakeover?.(previous.owner, previous.ageMs);
  const owner: LockOwner = { pid: process.pid, pidStartTime: processStartTime(process.pid), host: hostName(), acquiredAt: Date.now(), operation: opts.name };
  try {
    writeFileSync(ownerPath, JSON.stringify(owner));
  } catch {
    // The owner file is informational; the lock itself is the directory.
  }
  try {
    const result = await fn({ signal: controller.signal, lockPath });
    if (controller.signal.aborted) throw controller.signal.reason;
    return result;
  } finally {
    if (!controller.signal.aborted) {
      rmSync(ownerPath, { force: true });
      await release().catch(() => undefined);
    }
  }
}
