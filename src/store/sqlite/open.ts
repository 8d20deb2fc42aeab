import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync, readSync, statSync, accessSync, constants, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseMissingError, DatabaseUnusableError, MigrationNeededError, OperationError } from '../../errors.js';
import { APPLICATION_ID, MIGRATIONS, READABLE_FROM_VERSION, SCHEMA_VERSION, migrationSql } from './migrations.js';
import { type RetryPolicy, backoffDelay, isBusyError, sleepSync } from '../retry.js';
import { describeSqliteError } from './sqlite-errors.js';

export interface OpenOptions {
  /** busy_timeout in ms: how long one statement waits for another writer's lock. */
  busyTimeoutMs: number;
  retry: RetryPolicy;
  /**
   * 'create' makes the file if missing; 'existing' refuses a missing file; 'read' also opens it read-only, for
   * commands that only read: no pragma that writes, no migration, and no write access needed (see openReader).
   */
  mode: 'create' | 'existing' | 'read';
  /** Create the parent directory too (only for the per-user default path, which is ours to make). */
  createDir?: boolean;
  /** Apply pending migrations (default true); false throws MigrationNeededError for a new or older file. */
  migrate?: boolean;
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

// better-sqlite3 reads SQLITE_USE_URI once, when it loads its addon at the first connection: readers need a
// `file:…?immutable=1` URI (see openReader). Plain paths are passed so that they never start with `file:`.
if (process.env.SQLITE_USE_URI === undefined) process.env.SQLITE_USE_URI = '1';
/** The path as SQLite must be given it with URIs on: a relative `file:x` would be read as a URI. */
function plainPath(path: string): string {
  return path.startsWith('file:') ? resolve(path) : path;
}

/**
 * Checks a path before SQLite touches it: an existing non-empty file must start with SQLite's magic bytes;
 * a new file needs an existing, writable directory. Never writes anything.
 */
export function preflight(path: string, opts: Pick<OpenOptions, 'mode' | 'createDir'>): 'new' | 'existing' {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new DatabaseUnusableError(path, 'it is not a regular file');
    size = st.size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof DatabaseUnusableError) throw err;
      throw new OperationError(`cannot read database ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (opts.mode !== 'create') throw new DatabaseMissingError(path);
    const dir = dirname(path);
    if (!existsSync(dir)) {
      if (!opts.createDir) throw new OperationError(`cannot create database ${path}: directory ${dir} does not exist (create it first, or choose another --db)`);
      mkdirSync(dir, { recursive: true });
    }
    try {
      accessSync(dir, constants.W_OK);
    } catch {
      throw new OperationError(`cannot create database ${path}: directory ${dir} is not writable`);
    }
    return 'new';
  }
  if (size === 0) {
    // An empty file is a new database, unless a write-ahead log beside it says it once held one (truncated).
    let wal = 0;
    try {
      wal = statSync(`${path}-wal`).size;
    } catch {
      wal = 0;
    }
    if (wal > 0) throw new DatabaseUnusableError(path, `it is empty but ${path}-wal holds ${wal} bytes: it was truncated; restore it from a backup (it was left untouched)`);
    return 'existing';
  }
  const head = Buffer.alloc(16);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    readSync(fd, head, 0, 16, 0);
  } catch (err) {
    throw new OperationError(`cannot read database ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (size < 100 || !head.equals(SQLITE_MAGIC)) {
    throw new DatabaseUnusableError(path, 'it is not an SQLite database (wrong header); it was left untouched');
  }
  return 'existing';
}

/**
 * Runs `fn` in a BEGIN IMMEDIATE transaction, retrying the whole transaction on SQLITE_BUSY* with jittered backoff.
 * `prompt` takes the write lock with `beginPromptly` instead of through SQLite's busy handler.
 */
export function immediate<T>(db: Database.Database, retry: RetryPolicy, path: string, fn: () => T, opts: { prompt?: boolean } = {}): T {
  for (let attempt = 1; ; attempt++) {
    try {
      if (opts.prompt) beginPromptly(db);
      else db.exec('BEGIN IMMEDIATE');
      try {
        const result = fn();
        db.exec('COMMIT');
        return result;
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw err;
      }
    } catch (err) {
      if (isBusyError(err) && attempt < retry.attempts) {
        sleepSync(backoffDelay(retry, attempt + 1));
        continue;
      }
      throw describeSqliteError(err, path, attempt);
    }
  }
}

/**
 * BEGIN IMMEDIATE, trying again every 1–5 ms until the connection's busy_timeout has passed (then SQLITE_BUSY, as
 * the busy handler would). SQLite's own busy handler sleeps up to 100 ms between tries; against a stream of short
 * write transactions, the lock is taken in those gaps by writers that are running, and a sleeper can wait seconds:
 * under 16 busy writers a health-loop pass waited up to 2 s this way and the loop fell behind its period.
 */
export function beginPromptly(db: Database.Database): void {
  const timeoutMs = Number(db.pragma('busy_timeout', { simple: true }));
  const deadline = performance.now() + timeoutMs;
  db.pragma('busy_timeout = 0');
  try {
    for (let tries = 1; ; tries++) {
      try {
        db.exec('BEGIN IMMEDIATE');
        return;
      } catch (err) {
        if (!isBusyError(err) || performance.now() >= deadline) throw err;
        sleepSync(Math.min(tries, 5));
      }
    }
  } finally {
    db.pragma(`busy_timeout = ${timeoutMs}`);
  }
}

/** Runs one autocommit statement (or any idempotent step), retrying on SQLITE_BUSY* like `immediate`. */
export function withRetry<T>(retry: RetryPolicy, path: string, fn: () => T): T {
  for (let attempt = 1; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (isBusyError(err) && attempt < retry.attempts) {
        sleepSync(backoffDelay(retry, attempt + 1));
        continue;
      }
      throw describeSqliteError(err, path, attempt);
    }
  }
}

/**
 * Opens (or creates) an agentctl database: refuses files that are not SQLite, not ours, corrupt or too new (exit 4,
 * file untouched), then sets the pragmas every connection needs and applies pending migrations exactly once even
 * when several processes open a new file at the same moment.
 */
export function openDatabase(path: string, opts: OpenOptions): Database.Database {
  if (opts.mode === 'read') return openReader(path, opts);
  const kind = preflight(path, opts);
  if (kind === 'new' && opts.migrate === false) throw new MigrationNeededError(path, 0);
  let db: Database.Database;
  try {
    db = new Database(plainPath(path), { fileMustExist: kind === 'existing' && opts.mode === 'existing' });
  } catch (err) {
    throw describeSqliteError(err, path, 1);
  }
  try {
    // busy_timeout first: everything after it may meet another writer.
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs))}`);
    const { appId, version, tables } = readHeader(db, path, opts.retry);
    if (appId !== APPLICATION_ID && appId !== 0) {
      throw new DatabaseUnusableError(path, `it belongs to another application (application_id ${appId}); it was left untouched`);
    }
    if (version > SCHEMA_VERSION) {
      throw new DatabaseUnusableError(path, `its schema version ${version} is newer than this agentctl (${SCHEMA_VERSION}); upgrade agentctl. The file was left untouched`);
    }
    if (version < SCHEMA_VERSION && opts.migrate === false) throw new MigrationNeededError(path, version);
    if (appId === 0 && version === 0 && tables > 0) {
      throw new DatabaseUnusableError(path, 'it is an SQLite database of another application (it has tables but no agentctl mark); it was left untouched');
    }
    withRetry(opts.retry, path, () => {
      if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') db.pragma('journal_mode = WAL');
    });
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    if (version < SCHEMA_VERSION) migrate(db, path, opts.retry);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * The application id, schema version and table count, read in one snapshot: read one by one, a migration committed
 * by another process in between would make a half-read new file look like another application's.
 */
function readHeader(db: Database.Database, path: string, retry: RetryPolicy): { appId: number; version: number; tables: number } {
  return withRetry(retry, path, () => {
    db.exec('BEGIN');
    try {
      const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").get() as { n: number }).n;
      const appId = db.pragma('application_id', { simple: true }) as number;
      const version = db.pragma('user_version', { simple: true }) as number;
      return { appId, version, tables };
    } finally {
      db.exec('COMMIT');
    }
  });
}

/**
 * Opens an existing database for reading only: read-only connection, busy_timeout (a pragma of the connection, not
 * the file), no journal_mode, no migration. Works for a user who may read the file but not write it or its directory:
 * see connectReader. A schema this build can read is read as it is; an older one is refused with what to do.
 */
function openReader(path: string, opts: OpenOptions): Database.Database {
  const { db } = connectReader(path, opts.busyTimeoutMs);
  try {
    const { appId, version, tables } = readHeader(db, path, opts.retry);
    if (appId !== APPLICATION_ID && appId !== 0) {
      throw new DatabaseUnusableError(path, `it belongs to another application (application_id ${appId}); it was left untouched`);
    }
    if (appId === 0 && version === 0 && tables > 0) {
      throw new DatabaseUnusableError(path, 'it is an SQLite database of another application (it has tables but no agentctl mark); it was left untouched');
    }
    if (version > SCHEMA_VERSION) {
      throw new DatabaseUnusableError(path, `its schema version ${version} is newer than this agentctl (${SCHEMA_VERSION}); upgrade agentctl. The file was left untouched`);
    }
    // Empty, or being created by a writer right now: to a reader, as good as missing.
    if (version === 0) throw new DatabaseMissingError(path, { empty: true });
    if (version < READABLE_FROM_VERSION) {
      throw new OperationError(
        `database ${path} is at schema version ${version}, older than this agentctl reads (${READABLE_FROM_VERSION} to ${SCHEMA_VERSION}): its owner must run any write command once (or 'agentctl init --db ${path}') to migrate it`,
        { code: 'E_SCHEMA_OLD' },
      );
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** SQLite's answers when a read-only connection cannot create or open the WAL index (`-shm`) it needs. */
function walIndexUnavailable(err: unknown): boolean {
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  return code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_READONLY');
}

/**
 * The journal mode the file itself records (header bytes 18–19: 2 for WAL, 1 for a rollback journal), for a
 * connection that cannot ask SQLite (an immutable snapshot reports 'delete' whatever the file is).
 */
export function headerJournalMode(path: string): 'wal' | 'delete' {
  const head = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return head[18] === 2 && head[19] === 2 ? 'wal' : 'delete';
}

/** Bytes in the write-ahead log beside `path` (0 when there is none). */
export function walBytes(path: string): number {
  try {
    return statSync(`${path}-wal`).size;
  } catch {
    return 0;
  }
}

/**
 * A read-only connection to an existing database, checked by reading its schema once. In WAL mode a reader needs
 * the WAL index (`-shm`): it opens the one a writer keeps, and otherwise must create it, which a user who may not
 * write the directory cannot. Then, and only when there is no write-ahead log (so nothing committed lives outside
 * the main file), the file is read as an immutable snapshot; with a log, it says why it cannot read and what to do.
 * `snapshot` tells the caller which it got (a snapshot does not see later writes).
 */
export function connectReader(path: string, busyTimeoutMs: number): { db: Database.Database; snapshot: boolean } {
  const r = connectReaderOnce(path, busyTimeoutMs);
  if (r.snapshot) snapshots.add(r.db);
  return r;
}

const snapshots = new WeakSet<Database.Database>();
/** Whether `db` reads an immutable snapshot (see connectReader): it never sees later writes, so a live view reopens it. */
export function isSnapshot(db: Database.Database): boolean {
  return snapshots.has(db);
}

function connectReaderOnce(path: string, busyTimeoutMs: number): { db: Database.Database; snapshot: boolean } {
  preflight(path, { mode: 'read' });
  const open = (name: string) => {
    const db = new Database(name, { readonly: true, fileMustExist: true });
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    return db;
  };
  let db: Database.Database;
  try {
    db = open(plainPath(path));
  } catch (err) {
    throw describeSqliteError(err, path, 1);
  }
  try {
    db.pragma('application_id', { simple: true }); // a read transaction: needs the WAL index, reads only the header
    return { db, snapshot: false };
  } catch (err) {
    db.close();
    if (!walIndexUnavailable(err)) throw describeSqliteError(err, path, 1);
  }
  const wal = walBytes(path);
  if (wal > 0) {
    throw new OperationError(
      `cannot read database ${path} as this user: its write-ahead log (${wal} bytes) needs the index ${path}-shm, which only a user who may write ${dirname(path)} can create; try again while an agent or the health loop has it open, or let its owner run any write command once (nothing was written)`,
      { code: 'E_READONLY' },
    );
  }
  try {
    db = open(`${pathToFileURL(resolve(path)).href}?immutable=1`);
    db.pragma('application_id', { simple: true }); // a read transaction: needs the WAL index, reads only the header
    return { db, snapshot: true };
  } catch (err) {
    throw describeSqliteError(err, path, 1);
  }
}

/**
 * Applies pending migrations in one BEGIN IMMEDIATE transaction. Foreign keys are off meanwhile (a pragma that is a
 * no-op inside a transaction, so set before it): a migration that rebuilds a table drops the old one, and with them
 * on that would delete every row that refers to it (events, commands). The result is checked before commit.
 */
function migrate(db: Database.Database, path: string, retry: RetryPolicy): void {
  db.pragma('foreign_keys = OFF');
  try {
    migrateLocked(db, path, retry);
  } finally {
    db.pragma('foreign_keys = ON');
  }
}

function migrateLocked(db: Database.Database, path: string, retry: RetryPolicy): void {
  immediate(db, retry, path, () => {
    // Read again under the write lock: another process may have migrated since we looked.
    const current = db.pragma('user_version', { simple: true }) as number;
    const appId = db.pragma('application_id', { simple: true }) as number;
    if (current > SCHEMA_VERSION) throw new DatabaseUnusableError(path, `its schema version ${current} is newer than this agentctl (${SCHEMA_VERSION})`);
    if (appId !== 0 && appId !== APPLICATION_ID) throw new DatabaseUnusableError(path, `it belongs to another application (application_id ${appId})`);
    for (let v = current; v < MIGRATIONS.length; v++) db.exec(migrationSql(MIGRATIONS[v]!));
    const broken = db.pragma('foreign_key_check') as unknown[];
    if (broken.length) throw new DatabaseUnusableError(path, `migrating it would leave ${broken.length} row(s) pointing at missing rows; nothing was changed (run 'agentctl db-check')`);
    if (appId === 0) db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
}
