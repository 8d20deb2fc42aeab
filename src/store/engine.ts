import type { Dialect, Sql, SqlArgs } from './sql.js';

/**
 * What a Store asks of the engine beneath its `Sql`, beyond SQL: the few things that differ between an SQLite file
 * and a database server. The Store itself is engine-neutral; sqlite/engine.ts and postgres/engine.ts implement this.
 */
export interface StoreEngine {
  readonly kind: Dialect;
  /** The executor every statement goes through. */
  readonly sql: Sql;
  /** Whether this store may write (false for a read-only SQLite connection). */
  readonly writable: boolean;
  /** Whether reads come from an immutable snapshot that does not see later writes (an SQLite reader without write access). */
  readonly snapshot: boolean;
  /** SQLite: take the write lock by polling (the health loop turns it on). Ignored by a server. */
  promptWriteLock: boolean;
  /** SQLite: throws if the path no longer names the file this connection opened. A server has nothing to check. */
  assertSameFile(): void;
  /**
   * Rows of `sql` as arrays of `columns` read in the engine's cheapest way (SQLite's raw mode), through `via` (the
   * executor or one of its transactions); undefined when the engine has no such way.
   */
  rawBatches(via: Sql, sql: string, args: SqlArgs, batch: number): AsyncIterable<unknown[][]> | undefined;
  /**
   * Calls `wake` whenever new events may have been written, until the returned stop() is called: SQLite every
   * `pollMs` (a file announces nothing); a server on each notification, after each reconnect of its listener
   * (notifications are not durable), and on a slow safety poll, and every `pollMs` while its listener cannot
   * connect (it keeps trying). The caller reads the table (`id > last`) on a wake. A listener that cannot connect
   * is no failure: it is reported through opts.onError.
   */
  watchEvents(wake: () => void, opts: WatchOptions): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface WatchOptions {
  /**
   * How often SQLite's events table is read, and a server's while its announcements cannot be heard (the safety
   * poll beside them waits at least this long).
   */
  pollMs: number;
  /**
   * A listener connection that was lost or could not be made (one line), once for each outage: meanwhile the
   * events table is read every pollMs. (Store.watchEvents also reports here what its onWake threw.)
   */
  onError?(err: Error): void;
}

/** Whether a --db / AGENTCTL_DB value names a PostgreSQL database rather than an SQLite file. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}
