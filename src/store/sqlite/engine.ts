import type Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { DatabaseReplacedError, DatabaseUnusableError } from '../../errors.js';
import type { StoreEngine, WatchOptions } from '../engine.js';
import type { RetryPolicy } from '../retry.js';
import type { Sql, SqlArgs } from '../sql.js';
import { SqliteSql } from './executor.js';
import { isSnapshot } from './open.js';

/** An SQLite file beneath a Store: its connection, the file-identity checks before writes, the prompt write lock. */
export class SqliteEngine implements StoreEngine {
  readonly kind = 'sqlite' as const;
  readonly db: Database.Database;
  readonly sql: SqliteSql;
  readonly path: string;
  /**
   * Take the write lock by trying every few milliseconds instead of through SQLite's busy handler (see beginPromptly),
   * so that a stream of heartbeats cannot hold this connection off for seconds. The health loop turns it on.
   */
  promptWriteLock = false;
  /** The file this connection opened: a write after it was deleted or replaced would go nowhere anyone reads. */
  private readonly file: { dev: number; ino: number; size: number };
  /** performance.now() of the last identity check, and how long a single-statement write may rely on it. */
  private fileCheckedAt: number;
  private readonly fileCheckEveryMs: number;
  private readonly rawStmts = new Map<string, Database.Statement>();

  constructor(db: Database.Database, path: string, retry: RetryPolicy, fileCheckEveryMs = 100) {
    this.db = db;
    this.path = path;
    const st = statSync(path);
    this.file = { dev: st.dev, ino: st.ino, size: st.size };
    this.fileCheckedAt = performance.now();
    this.fileCheckEveryMs = fileCheckEveryMs;
    this.sql = new SqliteSql(db, {
      path,
      retry,
      beforeWrite: () => this.assertSameFileRecently(),
      beforeTx: () => this.assertSameFile(),
      prompt: () => this.promptWriteLock,
    });
  }

  /** Throws DatabaseReplacedError if the path no longer names the file this connection has open. Called before writes. */
  assertSameFile(): void {
    let st;
    try {
      st = statSync(this.path);
    } catch {
      throw new DatabaseReplacedError(this.path, 'deleted');
    }
    if (st.dev !== this.file.dev || st.ino !== this.file.ino) throw new DatabaseReplacedError(this.path, 'replaced');
    // The main file never shrinks in normal use (no auto-vacuum, no VACUUM in place): smaller means truncated.
    if (st.size < this.file.size) throw new DatabaseUnusableError(this.path, `it was truncated from ${this.file.size} to ${st.size} bytes while in use; nothing was written. Restore it from a backup`);
    this.file.size = st.size;
    this.fileCheckedAt = performance.now();
  }

  /**
   * assertSameFile, unless it passed less than fileCheckEveryMs ago. A stat costs about a tenth of a heartbeat; a
   * file deleted or replaced under a stream of heartbeats is noticed within that window instead of at once.
   */
  private assertSameFileRecently(): void {
    if (this.fileCheckEveryMs > 0 && performance.now() - this.fileCheckedAt < this.fileCheckEveryMs) return;
    this.assertSameFile();
  }

  get writable(): boolean {
    return !this.db.readonly;
  }

  get snapshot(): boolean {
    return isSnapshot(this.db);
  }

  /** In raw mode (no object per row: a reader of 100,000 agents makes 100,000 fewer objects). */
  rawBatches(via: Sql, sql: string, args: SqlArgs, batch: number): AsyncIterable<unknown[][]> | undefined {
    let s = this.rawStmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql).raw(true);
      this.rawStmts.set(sql, s);
    }
    return this.sql.batchesOf<unknown[]>(via, s, args, batch);
  }

  /** A file announces nothing: its events table is read every pollMs. */
  watchEvents(wake: () => void, opts: WatchOptions): Promise<() => Promise<void>> {
    const timer = setInterval(wake, opts.pollMs);
    return Promise.resolve(() => {
      clearInterval(timer);
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    return this.sql.close();
  }
}
