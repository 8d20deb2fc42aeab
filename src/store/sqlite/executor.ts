import type Database from 'better-sqlite3';
import type { RunResult, Sql, SqlArgs } from '../sql.js';
import { beginPromptly } from './open.js';
import { type RetryPolicy, backoffDelay, isBusyError } from '../retry.js';
import { describeSqliteError } from './sqlite-errors.js';

/** What the SQLite executor asks of the file it runs on, before it writes. */
export interface SqliteHooks {
  /** The path the connection opened (named in errors). */
  path: string;
  retry: RetryPolicy;
  /** Before a single autocommit statement that writes: may skip a check it made recently. */
  beforeWrite?: () => void;
  /** Before every write transaction. */
  beforeTx?: () => void;
  /** Take the write lock by polling (see beginPromptly) instead of through SQLite's busy handler. */
  prompt?: () => boolean;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** better-sqlite3 takes positional arguments spread, named ones as one object. */
function bind(args: SqlArgs | undefined): unknown[] {
  if (args === undefined) return [];
  return Array.isArray(args) ? (args as unknown[]) : [args];
}

/**
 * The Sql of one better-sqlite3 connection. Statements run synchronously inside (better-sqlite3 is synchronous) and
 * are prepared once. One connection has one transaction: while tx() or read() awaits between BEGIN and COMMIT, a
 * statement from any other async chain would silently join it (and be rolled back with it), so the executor is
 * guarded by an async mutex: a transaction holds it from BEGIN to COMMIT, and every other statement, transaction or
 * batch reader waits for it. Outside a transaction a statement runs at once, without waiting on anything.
 * Inside `fn`, use the Sql it is given: the executor itself, called from inside its own transaction, waits for
 * that transaction to end, which is waiting for it (the store modules are given a store bound to the transaction,
 * so they cannot make that mistake). No AsyncLocalStorage guards against it: on Node 20 it slows every Promise.
 */
export class SqliteSql implements Sql {
  readonly dialect = 'sqlite' as const;
  readonly db: Database.Database;
  private readonly hooks: SqliteHooks;
  private readonly stmts = new Map<string, Database.Statement>();
  /** Whether a transaction (or batch reader) holds the connection, and who waits for it, in order. */
  private held = false;
  private readonly waiters: (() => void)[] = [];
  /** The Sql a transaction's `fn` is given: the same connection, without the mutex. */
  private readonly inner: Sql;

  constructor(db: Database.Database, hooks: SqliteHooks) {
    this.db = db;
    this.hooks = hooks;
    this.inner = new TxSql(this);
  }

  /** The statement for `sql`, prepared once per connection. */
  prepared(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Runs one statement synchronously, with the busy retry and the file check before a write. */
  private once<T>(sql: string, exec: (s: Database.Statement) => T): T | Promise<T> {
    let s: Database.Statement;
    try {
      s = this.prepared(sql);
      if (!s.readonly) this.hooks.beforeWrite?.();
      return exec(s);
    } catch (err) {
      if (isBusyError(err) && this.hooks.retry.attempts > 1) return this.retried(() => exec(this.prepared(sql)));
      throw describeSqliteError(err, this.hooks.path, 1);
    }
  }

  /** The busy retry of a single statement after its first try failed: waits between tries without blocking. */
  private async retried<T>(exec: () => T): Promise<T> {
    for (let attempt = 2; ; attempt++) {
      await sleep(backoffDelay(this.hooks.retry, attempt));
      await this.idle();
      try {
        return exec();
      } catch (err) {
        if (isBusyError(err) && attempt < this.hooks.retry.attempts) continue;
        throw describeSqliteError(err, this.hooks.path, attempt);
      }
    }
  }

  /** Waits until no transaction holds the connection (at once when none does). */
  private async idle(): Promise<void> {
    if (!this.held) return;
    await this.acquire();
    this.release();
  }

  private acquire(): Promise<void> | void {
    if (!this.held) {
      this.held = true;
      return;
    }
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Hands the connection to the next waiter (it stays held), or frees it. */
  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }

  async all<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T[]> {
    if (this.held) await this.idle();
    return this.once(sql, (s) => s.all(...bind(args)) as T[]);
  }

  async get<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T | undefined> {
    if (this.held) await this.idle();
    return this.once(sql, (s) => s.get(...bind(args)) as T | undefined);
  }

  async run(sql: string, args?: SqlArgs): Promise<RunResult> {
    if (this.held) await this.idle();
    return this.once(sql, (s) => ({ changes: s.run(...bind(args)).changes }));
  }

  /**
   * Rows in batches, read from the database as they are consumed. The connection is held until the iteration ends
   * (another statement on it would fail while a read is open), so read anything else of this executor first.
   * `statement`: the statement to iterate instead of `sql` prepared (the store's raw-mode ones, rows as arrays).
   */
  async *batches<T = Record<string, unknown>>(sql: string, args?: SqlArgs, batch = 1000, statement?: Database.Statement): AsyncIterable<T[]> {
    await this.acquire();
    try {
      yield* iterate<T>(statement ?? this.prepared(sql), args, batch, this.hooks.path);
    } finally {
      this.release();
    }
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      this.hooks.beforeTx?.();
      const { db } = this;
      for (let attempt = 1; ; attempt++) {
        try {
          if (this.hooks.prompt?.()) beginPromptly(db);
          else db.exec('BEGIN IMMEDIATE');
          try {
            const result = await fn(this.inner);
            db.exec('COMMIT');
            return result;
          } catch (err) {
            if (db.inTransaction) db.exec('ROLLBACK');
            throw err;
          }
        } catch (err) {
          if (isBusyError(err) && attempt < this.hooks.retry.attempts) {
            await sleep(backoffDelay(this.hooks.retry, attempt + 1));
            continue;
          }
          throw describeSqliteError(err, this.hooks.path, attempt);
        }
      }
    } finally {
      this.release();
    }
  }

  /** BEGIN DEFERRED: no write lock, and it works on a file this user may only read. */
  async read<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      const { db } = this;
      db.exec('BEGIN');
      try {
        return await fn(this.inner);
      } finally {
        if (db.inTransaction) db.exec('COMMIT');
      }
    } catch (err) {
      throw describeSqliteError(err, this.hooks.path, 1);
    } finally {
      this.release();
    }
  }

  /** This host's clock: SQLite has no server of its own. */
  async now(): Promise<number> {
    return Date.now();
  }

  async close(): Promise<void> {
    if (this.held) await this.idle();
    if (this.db.open) this.db.close();
  }

  /**
   * The rows of `statement` (one of this connection's, such as a raw-mode one) in batches, through `via`: this
   * executor (waiting for the connection like batches) or the Sql of its transaction (at once). Undefined when `via`
   * is neither.
   */
  batchesOf<T>(via: Sql, statement: Database.Statement, args: SqlArgs | undefined, batch: number): AsyncIterable<T[]> | undefined {
    if (via === this) return this.batches<T>('', args, batch, statement);
    if (via === this.inner) return (async function* (path: string) {
      yield* iterate<T>(statement, args, batch, path);
    })(this.hooks.path);
    return undefined;
  }

  /** For TxSql: one statement on the connection this transaction holds. */
  direct<T>(sql: string, exec: (s: Database.Statement) => T): T {
    try {
      return exec(this.prepared(sql));
    } catch (err) {
      throw describeSqliteError(err, this.hooks.path, 1);
    }
  }

  get path(): string {
    return this.hooks.path;
  }
}

function* iterate<T>(stmt: Database.Statement, args: SqlArgs | undefined, batch: number, path: string): Generator<T[]> {
  let out: T[] = [];
  try {
    for (const row of stmt.iterate(...bind(args)) as IterableIterator<T>) {
      out.push(row);
      if (out.length >= batch) {
        yield out;
        out = [];
      }
    }
  } catch (err) {
    throw describeSqliteError(err, path, 1);
  }
  if (out.length) yield out;
}

/** The Sql inside one of SqliteSql's transactions: the same connection, statements at once, nested transactions join. */
class TxSql implements Sql {
  readonly dialect = 'sqlite' as const;
  constructor(private readonly outer: SqliteSql) {}
  async all<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T[]> {
    return this.outer.direct(sql, (s) => s.all(...bind(args)) as T[]);
  }
  async get<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T | undefined> {
    return this.outer.direct(sql, (s) => s.get(...bind(args)) as T | undefined);
  }
  async run(sql: string, args?: SqlArgs): Promise<RunResult> {
    return this.outer.direct(sql, (s) => ({ changes: s.run(...bind(args)).changes }));
  }
  async *batches<T = Record<string, unknown>>(sql: string, args?: SqlArgs, batch = 1000): AsyncIterable<T[]> {
    yield* iterate<T>(this.outer.prepared(sql), args, batch, this.outer.path);
  }
  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return fn(this);
  }
  read<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return fn(this);
  }
  async now(): Promise<number> {
    return Date.now();
  }
  async close(): Promise<void> {
    throw new Error('close() inside a transaction');
  }
}
