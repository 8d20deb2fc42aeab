/** Which SQL engine an executor speaks. */
export type Dialect = 'sqlite' | 'postgres';
/** Positional `?` arguments, or named `:name` / `@name` arguments in one object. */
export type SqlArgs = readonly unknown[] | Readonly<Record<string, unknown>>;
export interface RunResult { changes: number }
/** One connection's (or pool's) SQL, asynchronous on every engine. */
export interface Sql {
  readonly dialect: Dialect;
  all<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T[]>;
  get<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T | undefined>;
  run(sql: string, args?: SqlArgs): Promise<RunResult>;
  /** Rows in batches of at most `batch`, read as they are consumed. */
  batches<T = Record<string, unknown>>(sql: string, args?: SqlArgs, batch?: number): AsyncIterable<T[]>;
  /**
   * `fn` in one write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction on one pooled connection),
   * retried as a whole on SQLITE_BUSY* / serialization failure or deadlock; no other statement of this executor
   * runs inside it.
   */
  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /** A read transaction: one snapshot for several queries. */
  read<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /** Milliseconds since the epoch by the database's clock (SQLite: this host's Date.now()). */
  now(): Promise<number>;
  close(): Promise<void>;
}
