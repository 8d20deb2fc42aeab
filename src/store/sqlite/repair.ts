import Database from 'better-sqlite3';
import { chmodSync, chownSync, closeSync, existsSync, fsyncSync, linkSync, mkdtempSync, openSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DatabaseMissingError, OperationError } from '../../errors.js';
import type { Diagnosis } from '../../core/diagnosis.js';
import { type LockOptions, lockPaths, withExclusiveLock } from './lock.js';
import { besideModes, euid, lstatOrNull, removeEntry } from '../safe-files.js';
import { describeSqliteError } from './sqlite-errors.js';
import { type Store, openStore } from '../store.js';
import { LOCK_NAMES, diagnose } from './diagnose.js';

export interface RepairReport {
  backup: string | null;
  /** For an unusable (corrupt) file: the new file the readable rows were copied into. */
  recovered: string | null;
  actions: string[];
  after: Diagnosis;
}

/** A file name beside `path` stamped with the time, e.g. agents.db.backup-20261125T041503Z.db (a symlink there counts as taken). */
export function besideWithStamp(path: string, what: string, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let candidate = `${path}.${what}-${stamp}.db`;
  for (let i = 2; lstatOrNull(candidate); i++) candidate = `${path}.${what}-${stamp}-${i}.db`;
  return candidate;
}

/** The private directory a backup is written in before it gets its name: `<db>.fix-tmp-XXXXXX`. */
const COPY_DIR = '.fix-tmp-';
const COPY_NAME = 'copy.db';

/**
 * Backs the database up with VACUUM INTO, so that nothing that looks like a backup exists until one is whole: the
 * copy is written in a private directory beside the database (mode 0700, so nobody can plant a path in it), checked
 * with quick_check, given the database's owner and read bits (never group or other write), synced, and only then
 * linked to its stamped name (link, not rename: an existing file of that name is never replaced). A failure or a
 * kill leaves only that private directory, which the next --fix removes. Returns the backup's path.
 */
function writeBackup(store: Store, path: string, now: number): string {
  let work: string;
  try {
    work = mkdtempSync(`${path}${COPY_DIR}`);
  } catch (err) {
    throw backupError(err, path);
  }
  const copy = join(work, COPY_NAME);
  try {
    try {
      store.db.prepare('VACUUM INTO ?').run(copy);
    } catch (err) {
      throw backupError(err, path);
    }
    verifyCopy(copy, path);
    const db = statSync(path);
    chmodSync(copy, besideModes(path).file);
    if (euid() === 0 && (db.uid !== 0 || db.gid !== 0)) chownSync(copy, db.uid, db.gid);
    const fd = openSync(copy, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      return publish(copy, path, 'backup', now);
    } catch (err) {
      throw backupError(err, path);
    }
  } finally {
    removeCopyDir(work);
  }
}

/** Gives a finished copy its stamped name beside `path` by a hard link, which never replaces an existing file. */
function publish(copy: string, path: string, what: string, now: number): string {
  for (;;) {
    const name = besideWithStamp(path, what, now);
    try {
      linkSync(copy, name);
      return name;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/** Opens the copy read-only and runs quick_check on it; a copy that fails is no backup. */
function verifyCopy(copy: string, path: string): void {
  let db: Database.Database | null = null;
  let result: string[];
  try {
    db = new Database(copy, { readonly: true, fileMustExist: true });
    result = (db.pragma('quick_check') as Record<string, string>[]).map((r) => String(Object.values(r)[0]));
  } catch (err) {
    throw backupError(err, path);
  } finally {
    db?.close();
  }
  if (result.length !== 1 || result[0] !== 'ok') {
    throw new OperationError(`the backup of ${path} did not verify (quick_check: ${result.slice(0, 3).join('; ')}); nothing was changed. Run 'agentctl db-check --full'`);
  }
}

/** Why the backup could not be written, in one line; a full disk said as such, with how much room it needs. */
function backupError(err: unknown, path: string): Error {
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') {
    const mb = Math.max(1, Math.ceil(statSync(path).size / 1_048_576));
    return new OperationError(`cannot back up ${path} before repairing it: the disk is full; nothing was changed. Free at least ${mb} MB on the filesystem of ${dirname(path)} (the backup is a full copy) and run 'agentctl db-check --fix' again`, { cause: err, code: 'E_FULL' });
  }
  const e = describeSqliteError(err, path, 1);
  return new OperationError(`cannot back up ${path} before repairing it: ${e.message}; nothing was changed`, { cause: err });
}

/** Removes a copy directory and what VACUUM INTO leaves in it (the copy, its journal); never recursively. */
function removeCopyDir(dir: string): void {
  for (const f of [COPY_NAME, `${COPY_NAME}-journal`, `${COPY_NAME}-wal`, `${COPY_NAME}-shm`]) removeEntry(join(dir, f));
  removeEntry(dir);
}

/**
 * The copy directories of earlier --fix runs that were killed (they are only ever ours, and we hold the maintenance
 * lock, so none is in use): removed, if they are our own private directories. Returns what it did.
 */
function removeLeftoverCopies(path: string): string[] {
  const prefix = `${basename(path)}${COPY_DIR}`;
  const out: string[] = [];
  for (const f of readdirSync(dirname(path))) {
    if (!f.startsWith(prefix)) continue;
    const dir = join(dirname(path), f);
    const st = lstatOrNull(dir);
    if (!st?.isDirectory() || st.uid !== euid() || st.mode & 0o077) continue;
    removeCopyDir(dir);
    out.push(lstatOrNull(dir) ? `left ${dir} from an interrupted backup in place: it holds files agentctl did not write` : `removed ${dir}, left by an interrupted backup`);
  }
  return out;
}

/**
 * db-check --fix. Holding the maintenance lock: for a usable file, first a backup with VACUUM INTO beside it, then
 * only what is safe — WAL mode, a truncating checkpoint, stale locks removed, state-model rows repaired (each with its
 * event). For an unusable file, nothing is written to it: the readable rows are copied into a new file beside it.
 */
export async function repairDatabase(
  path: string,
  now: number,
  opts: { lockStaleMs?: number; onWait?: LockOptions['onWait']; onWarning?: LockOptions['onWarning'] } = {},
): Promise<RepairReport> {
  if (!existsSync(path)) throw new DatabaseMissingError(path);
  const before = diagnose(path, now, opts);
  if (before.verdict === 'unusable') {
    // Built in a private directory like a backup, and named only once whole: no path planted beside it is opened.
    const work = mkdtempSync(`${path}${COPY_DIR}`);
    try {
      const actions = await recoverInto(path, join(work, COPY_NAME));
      const recovered = publish(join(work, COPY_NAME), path, 'recovered', now);
      return { backup: null, recovered, actions, after: before };
    } finally {
      removeCopyDir(work);
    }
  }
  const staleLocks = LOCK_NAMES.filter((n) => before.findings.some((f) => f.check === `${n} lock` && !f.ok && f.fix));
  const takeovers: string[] = [];
  const lockOpts: LockOptions = {
    name: 'maintenance',
    ...(opts.lockStaleMs ? { staleMs: opts.lockStaleMs } : {}),
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    onTakeover: (owner) => takeovers.push(`took over the maintenance lock${owner ? ` of pid ${owner.pid}, which died holding it` : ''}`),
  };
  const done: { backup: string; actions: string[] } = await withExclusiveLock(path, lockOpts, async (lock) => {
    const actions: string[] = [...takeovers];
    actions.push(...removeLeftoverCopies(path));
    const store = await openStore({ path, mode: 'existing' });
    try {
      const backup = writeBackup(store, path, now);
      actions.push(`backed up to ${backup} (verified with quick_check)`);
      if (lock.signal.aborted) throw lock.signal.reason;
      for (const name of staleLocks.filter((n) => n !== 'maintenance')) {
        const { lockPath, ownerPath } = lockPaths(path, name);
        if (!removeEntry(lockPath)) {
          actions.push(`could not remove the ${name} lock ${lockPath}: it is not empty; remove it by hand`);
          continue;
        }
        removeEntry(ownerPath);
        actions.push(`removed the stale ${name} lock`);
      }
      if (before.repairs.length) {
        await store.tx(async (s) => {
          for (const r of before.repairs) await s.sql.run(r.sql, r.params);
        });
        actions.push(...before.repairs.map((r) => `repaired: ${r.what}`));
      }
      const cp = store.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
      actions.push(cp[0]?.busy ? 'checkpoint could not finish (readers active); the WAL will shrink later' : 'checkpointed and truncated the WAL');
      return { backup, actions };
    } catch (err) {
      throw describeSqliteError(err, path, 1);
    } finally {
      await store.close();
    }
  });
  return { ...done, recovered: null, after: diagnose(path, Date.now(), opts) };
}

/** Copies every readable row of a damaged database into a new agentctl database at `target`. The source is only read. */
async function recoverInto(source: string, target: string): Promise<string[]> {
  let src: Database.Database;
  try {
    src = new Database(source, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new OperationError(`cannot read ${source} at all (${(err as Error).message}); restore it from a backup`, { cause: err });
  }
  const actions: string[] = [];
  const dst = await openStore({ path: target });
  try {
    // Copy rows as they were: without the triggers, which would add registration events and rewrite states.
    const triggers = dst.db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'").all() as { name: string; sql: string }[];
    for (const t of triggers) dst.db.exec(`DROP TRIGGER ${t.name}`);
    for (const table of ['agents', 'events', 'commands']) {
      let copied = 0;
      let lost = 0;
      try {
        const cols = (dst.db.prepare(`SELECT name FROM pragma_table_xinfo('${table}') WHERE hidden = 0`).all() as { name: string }[]).map((c) => c.name);
        const insert = dst.db.prepare(`INSERT OR IGNORE INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`);
        const ids = src.prepare(`SELECT rowid AS id FROM ${table}`).pluck().all() as number[];
        const one = src.prepare(`SELECT ${cols.join(', ')} FROM ${table} WHERE rowid = ?`);
        dst.db.exec('BEGIN IMMEDIATE');
        for (const id of ids) {
          try {
            const row = one.get(id) as Record<string, unknown> | undefined;
            if (row && insert.run(row).changes) copied++;
            else lost++;
          } catch {
            lost++;
          }
        }
        dst.db.exec('COMMIT');
      } catch (err) {
        if (dst.db.inTransaction) dst.db.exec('COMMIT');
        actions.push(`${table}: stopped early (${(err as Error).message})`);
      }
      actions.push(`${table}: copied ${copied} row(s)${lost ? `, ${lost} unreadable` : ''}`);
    }
    for (const t of triggers) dst.db.exec(t.sql);
  } finally {
    await src.close();
    await dst.close();
  }
  return actions;
}
