import Database from 'better-sqlite3';
import { existsSync, rmSync } from 'node:fs';
import { DatabaseMissingError, OperationError } from '../errors.js';
import { type LockOptions, lockPaths, withExclusiveLock } from '../store/lock.js';
import { openStore } from '../store/store.js';
import { type Diagnosis, LOCK_NAMES, diagnose } from './diagnose.js';

export interface RepairReport {
  backup: string | null;
  /** For an unusable (corrupt) file: the new file the readable rows were copied into. */
  recovered: string | null;
  actions: string[];
  after: Diagnosis;
}

/** A file name beside `path` stamped with the time, e.g. agents.db.backup-20261125T041503Z.db. */
export function besideWithStamp(path: string, what: string, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let candidate = `${path}.${what}-${stamp}.db`;
  for (let i = 2; existsSync(candidate); i++) candidate = `${path}.${what}-${stamp}-${i}.db`;
  return candidate;
}

/**
 * db-check --fix. Holding the maintenance lock: for a usable file, first a backup with VACUUM INTO beside it, then
 * only what is safe — WAL mode, a truncating checkpoint, stale locks removed, state-model rows repaired (each with its
 * event). For an unusable file, nothing is written to it: the readable rows are copied into a new file beside it.
 */
export async function repairDatabase(
  path: string,
  now: number,
  opts: { lockStaleMs?: number; onWait?: LockOptions['onWait'] } = {},
): Promise<RepairReport> {
  if (!existsSync(path)) throw new DatabaseMissingError(path);
  const before = diagnose(path, now, opts);
  if (before.verdict === 'unusable') {
    const recovered = besideWithStamp(path, 'recovered', now);
    const actions = recoverInto(path, recovered);
    return { backup: null, recovered, actions, after: before };
  }
  const staleLocks = LOCK_NAMES.filter((n) => before.findings.some((f) => f.check === `${n} lock` && !f.ok));
  const takeovers: string[] = [];
  const lockOpts: LockOptions = {
    name: 'maintenance',
    ...(opts.lockStaleMs ? { staleMs: opts.lockStaleMs } : {}),
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
    onTakeover: (owner) => takeovers.push(`took over the maintenance lock${owner ? ` of pid ${owner.pid}, which died holding it` : ''}`),
  };
  const done = await withExclusiveLock(path, lockOpts, async (lock) => {
    const actions: string[] = [...takeovers];
    const backup = besideWithStamp(path, 'backup', now);
    const store = openStore({ path, mode: 'existing' });
    try {
      store.db.prepare('VACUUM INTO ?').run(backup);
      actions.push(`backed up to ${backup}`);
      if (lock.signal.aborted) throw lock.signal.reason;
      for (const name of staleLocks.filter((n) => n !== 'maintenance')) {
        const { lockPath, ownerPath } = lockPaths(path, name);
        rmSync(lockPath, { recursive: true, force: true });
        rmSync(ownerPath, { force: true });
        actions.push(`removed the stale ${name} lock`);
      }
      if (before.repairs.length) {
        store.immediate(() => {
          for (const r of before.repairs) store.db.prepare(r.sql).run(r.params);
        });
        actions.push(...before.repairs.map((r) => `repaired: ${r.what}`));
      }
      const cp = store.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
      actions.push(cp[0]?.busy ? 'checkpoint could not finish (readers active); the WAL will shrink later' : 'checkpointed and truncated the WAL');
    } finally {
      store.close();
    }
    return { backup, actions };
  });
  return { ...done, recovered: null, after: diagnose(path, Date.now(), opts) };
}

/** Copies every readable row of a damaged database into a new agentctl database at `target`. The source is only read. */
function recoverInto(source: string, target: string): string[] {
  let src: Database.Database;
  try {
    src = new Database(source, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new OperationError(`cannot read ${source} at all (${(err as Error).message}); restore it from a backup`, { cause: err });
  }
  const actions: string[] = [];
  const dst = openStore({ path: target });
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
    src.close();
    dst.close();
  }
  return actions;
}
