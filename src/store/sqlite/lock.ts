import fs, { renameSync, statSync } from 'node:fs';
import { LockCompromisedError, LockHeldError, OperationError, UnsafePathError } from '../../errors.js';
import { bootId, hostName, pidExists, processStartTime } from '../../core/host.js';
import { besideModes, lstatOrNull, readNoFollow, removeEntry, replaceFile, trustedUids } from '../safe-files.js';

/**
 * The exclusive lock beside the database, for what SQLite's own locking cannot guard: one health loop at a time,
 * and operations on the file itself (migrations by hand, db-check --fix, backup, purge, restart).
 * proper-lockfile keeps a directory `<db>.<name>.lock` whose mtime it refreshes; a holder that dies stops refreshing,
 * and after `staleMs` the next caller takes the lock over. An `<db>.<name>.owner` file says who holds it; when it
 * names a process on this host that is proven gone, the lock is taken over at once. Neither path is ever followed
 * as a symlink, and a lock another user planted is not honoured (see inspectLock).
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
  /** Called before waiting out the stale period of a lock whose holder is unknown (no owner file): how long, at most. */
  onWait?: (info: LockOwner | null, waitMs: number) => void;
  /** Called with one line when something at the lock's paths is not honoured (a planted symlink, another user's lock). */
  onWarning?: (message: string) => void;
}

export interface LockOwner {
  pid: number;
  /** The holder's start time (clock ticks after boot), so that a recycled pid is not taken for it. */
  pidStartTime?: number | null;
  host: string | null;
  /** The holder's boot id: a lock from an earlier boot of this host is proven abandoned. */
  bootId?: string | null;
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

/**
 * The file system calls proper-lockfile makes, with two changes: the lock directory is made with the mode of what
 * lies beside the database (never group or other write, whatever the umask), and it is judged by lstat, so that a
 * symlink at its path is never taken for a lock.
 */
function lockFs(dirMode: number): typeof fs {
  return Object.assign(Object.create(fs) as typeof fs, {
    mkdir: (path: string, cb: (err: NodeJS.ErrnoException | null) => void) => fs.mkdir(path, { mode: dirMode }, (err) => cb(err)),
    stat: fs.lstat,
  });
}

/** What lies at a lock's paths, judged without following a symlink or trusting another user's file. */
export interface LockInspection {
  /** The holder the owner file names; null when there is none, or it is not to be believed (see `problem`). */
  owner: LockOwner | null;
  /** How long ago the lock directory was last refreshed. */
  ageMs: number;
  /** The lock directory's owner and inode (so that only the lock judged is removed). */
  uid: number;
  ino: number;
  /**
   * Set when the lock is not honoured: its path is a symlink or not a directory, or it belongs to a uid other than
   * the database owner's, root's or this process's. Such a lock is removed (or moved aside), never waited for.
   */
  planted: string | null;
  /** Set when the owner file is a symlink, not a regular file, or written by an untrusted uid: it is ignored. */
  ownerProblem: string | null;
}

/** Who holds (or last held) the named lock, how old its last refresh is, and whether it can be trusted; null if it is not held. */
export function inspectLock(dbPath: string, name: string): LockInspection | null {
  const { lockPath, ownerPath } = lockPaths(dbPath, name);
  const st = lstatOrNull(lockPath);
  if (!st) return null;
  const trusted = trustedUids(dbPath);
  // proper-lockfile may set the mtime a little ahead of our clock (it rounds to what the file system keeps): never a negative age.
  const ageMs = Math.max(0, Date.now() - st.mtimeMs);
  let planted: string | null = null;
  if (st.isSymbolicLink()) planted = `${lockPath} is a symlink owned by uid ${st.uid}; a lock is never a symlink`;
  else if (!st.isDirectory()) planted = `${lockPath} is not a directory (owned by uid ${st.uid})`;
  else if (!trusted.has(st.uid)) planted = `${lockPath} belongs to uid ${st.uid}, neither the database's owner (uid ${dbOwner(dbPath)}) nor root`;
  const { owner, problem } = readOwner(ownerPath, trusted);
  return { owner: planted ? null : owner, ageMs, uid: st.uid, ino: st.ino, planted, ownerProblem: problem };
}

function dbOwner(dbPath: string): string {
  try {
    return String(statSync(dbPath).uid);
  } catch {
    return '?';
  }
}

/** The owner file's record; null when it is missing or unreadable, with `problem` when it is not to be trusted. */
function readOwner(ownerPath: string, trusted: Set<number>): { owner: LockOwner | null; problem: string | null; ageMs: number | null } {
  const r = readNoFollow(ownerPath);
  if (r === null) return { owner: null, problem: null, ageMs: null };
  if ('refused' in r) return { owner: null, problem: r.refused, ageMs: null };
  if (!trusted.has(r.uid)) return { owner: null, problem: `${ownerPath} was written by uid ${r.uid}, neither the database's owner nor root`, ageMs: null };
  try {
    const owner = JSON.parse(r.text) as LockOwner;
    if (!Number.isInteger(owner?.pid) || owner.pid <= 0) return { owner: null, problem: `${ownerPath} names no process`, ageMs: Date.now() - r.mtimeMs };
    return { owner, problem: null, ageMs: Date.now() - r.mtimeMs };
  } catch {
    return { owner: null, problem: null, ageMs: Date.now() - r.mtimeMs };
  }
}

/**
 * True when the lock's holder ran on this host and is proven gone: its pid names no process or another one (its
 * start time differs), or the machine rebooted since (another boot id).
 */
export function holderIsDead(owner: LockOwner): boolean {
  if (owner.host !== hostName()) return false;
  if (owner.bootId && bootId() && owner.bootId !== bootId()) return true;
  const start = processStartTime(owner.pid);
  if (start === null) return !pidExists(owner.pid);
  return owner.pidStartTime != null && start !== owner.pidStartTime;
}

/**
 * Clears what blocks the lock before taking it: a planted lock (symlink, file, another user's directory) is removed,
 * or moved aside when it cannot be; the lock of a holder proven dead is removed at once. Says what it did through
 * `onWarning`. Returns how long to keep trying for a lock whose holder is unknown (no trustworthy owner file).
 */
function clearBlockers(dbPath: string, opts: LockOptions, staleMs: number): { waitMs: number } {
  const { lockPath, ownerPath } = lockPaths(dbPath, opts.name);
  const held = inspectLock(dbPath, opts.name);
  if (!held) return { waitMs: 0 };
  if (held.planted) {
    if (!removeEntry(lockPath)) {
      const aside = `${lockPath}.planted-${Date.now()}`;
      try {
        renameSync(lockPath, aside);
      } catch (err) {
        throw new UnsafePathError(lockPath, `${held.planted}, and it cannot be removed (${(err as Error).message}): remove it by hand`, { cause: err });
      }
      opts.onWarning?.(`${held.planted}: not honoured; moved aside to ${aside} (remove it)`);
    } else {
      opts.onWarning?.(`${held.planted}: not honoured; removed it`);
    }
    if (held.ownerProblem) removeEntry(ownerPath);
    return { waitMs: 0 };
  }
  if (held.owner && holderIsDead(held.owner)) {
    // Proven dead on this host: take over at once. Only the directory judged is removed (same inode), so a lock
    // another taker made meanwhile is left alone; should two takers still race in the instant between, the loser's
    // next refresh finds its lock compromised and it stops (proper-lockfile's own stale takeover has the same rule).
    if (lstatOrNull(lockPath)?.ino === held.ino && removeEntry(lockPath)) return { waitMs: 0 };
  }
  if (!held.owner) {
    // Nobody to ask whether it lives (its owner file is missing or untrusted): wait out the stale period, no longer.
    const waitMs = Math.max(0, staleMs - held.ageMs) + 1000;
    opts.onWait?.(null, waitMs);
    return { waitMs };
  }
  return { waitMs: 0 };
}

/**
 * Runs `fn` holding the named exclusive lock. Throws LockHeldError when another live process holds it. A lock that
 * is not honoured (planted by another user) or whose holder is proven dead on this host is taken at once; one whose
 * holder is unknown is waited for at most its stale period. If the lock is compromised while `fn` runs,
 * `handle.signal` aborts and the result is a LockCompromisedError instead of a crash.
 */
export async function withExclusiveLock<T>(dbPath: string, opts: LockOptions, fn: (handle: LockHandle) => Promise<T>): Promise<T> {
  const staleMs = Math.max(2000, opts.staleMs ?? 30_000);
  const { lockPath, ownerPath } = lockPaths(dbPath, opts.name);
  const controller = new AbortController();
  let retries: import('proper-lockfile').LockOptions['retries'] = { retries: opts.retries ?? 0, factor: 1.5, minTimeout: 100, maxTimeout: 2000, randomize: true };
  const previous = readOwner(ownerPath, trustedUids(dbPath));
  if (previous.problem) opts.onWarning?.(`the ${opts.name} lock's owner file is not trusted (${previous.problem}): not followed; it is replaced`);
  const { waitMs } = clearBlockers(dbPath, opts, staleMs);
  if (waitMs > 0) retries = { retries: Math.max(opts.retries ?? 0, Math.ceil(waitMs / 250) + 4), factor: 1, minTimeout: 250, maxTimeout: 250 };
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
      fs: lockFs(besideModes(dbPath).dir),
      onCompromised: (err) => controller.abort(new LockCompromisedError(lockPath, { cause: err })),
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') throw new LockHeldError(opts.name, lockPath, { cause: err });
    throw new OperationError(`cannot take the ${opts.name} lock ${lockPath}: ${(err as Error).message}`, { cause: err });
  }
  // A clean release removes the owner file: finding one means its holder died holding the lock, and we took it over.
  if (previous.owner || previous.ageMs !== null) opts.onTakeover?.(previous.owner, previous.ageMs ?? 0);
  const owner: LockOwner = { pid: process.pid, pidStartTime: processStartTime(process.pid), host: hostName(), bootId: bootId(), acquiredAt: Date.now(), operation: opts.name };
  try {
    // Replaced by rename, never written through: a symlink planted at the owner path is itself replaced.
    replaceFile(ownerPath, JSON.stringify(owner), besideModes(dbPath).file);
  } catch (err) {
    // The owner file is informational; the lock itself is the directory. On a full disk the operation itself
    // fails next and says so: one line, not two.
    if ((err as { code?: string }).code !== 'E_FULL') opts.onWarning?.(`cannot write the ${opts.name} lock's owner file: ${(err as Error).message}`);
  }
  try {
    const result = await fn({ signal: controller.signal, lockPath });
    if (controller.signal.aborted) throw controller.signal.reason;
    return result;
  } finally {
    if (!controller.signal.aborted) {
      removeEntry(ownerPath);
      await release().catch(() => undefined);
    }
  }
}
