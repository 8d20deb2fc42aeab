import type pg from 'pg';
import { loadPg } from './pg-module.js';
import { redactUrl } from '../../core/redact.js';
import { OperationError } from '../../errors.js';
import { type RetryPolicy, backoffDelay } from '../retry.js';
import type { RunResult, Sql, SqlArgs } from '../sql.js';
import { bind, rewrite } from './placeholders.js';

const { Pool, TypeOverrides } = loadPg();

/**
 * `Sql` over a `pg` Pool. The store's SQL keeps SQLite's placeholders (`?`, `:name`, `@name`), rewritten to $n
 * (placeholders.ts). BIGINT, COUNT and NUMERIC come back as JS numbers and JSON as its text, as SQLite gives them,
 * through type parsers of this pool only (never pg's global ones). Host, user, password, database, TLS come from
 * the URL (`?sslmode=…`, `sslrootcert=…`) and the standard PG* environment variables (PGHOST, PGUSER, PGPASSWORD,
 * PGSSLMODE, ~/.pgpass…), which pg reads itself.
 */

export interface PgOptions {
  /** postgres://user@host:port/dbname[?sslmode=…] */
  url: string;
  /** A write transaction that meets a serialization failure or deadlock is retried as a whole (default: 3 tries). */
  retry?: RetryPolicy;
  /** Pool size (default: 10). */
  max?: number;
  /** Shown in pg_stat_activity (default: agentctl). */
  applicationName?: string;
  /** How long a new connection may take (default: PGCONNECT_TIMEOUT seconds, else 10 s). */
  connectTimeoutMs?: number;
}

export const DEFAULT_PG_RETRY: RetryPolicy = { attempts: 3, factor: 1.5, baseDelayMs: 50 };

const OID = { INT8: 20, NUMERIC: 1700, JSON: 114, JSONB: 3802 } as const;

/** The type parsers of agentctl's pools: numbers as numbers, JSON as text. */
export function agentctlTypes(): pg.CustomTypesConfig {
  const types = new TypeOverrides();
  const num = (v: string) => Number(v);
  types.setTypeParser(OID.INT8, num);
  types.setTypeParser(OID.NUMERIC, num);
  types.setTypeParser(OID.JSON, (v: string) => v);
  types.setTypeParser(OID.JSONB, (v: string) => v);
  return types;
}

/** TLS settings pg reads only from the URL, as libpq reads them from the environment too. */
const TLS_ENV = { sslmode: 'PGSSLMODE', sslrootcert: 'PGSSLROOTCERT', sslcert: 'PGSSLCERT', sslkey: 'PGSSLKEY' } as const;

/**
 * `url` with the TLS settings of the environment (PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY) added where the
 * URL does not give its own, as libpq does: pg reads PGHOST, PGUSER, PGPASSWORD, ~/.pgpass and the others itself,
 * but the certificate files only from the URL (and PGSSLMODE with its own meaning).
 */
export function withTlsEnv(url: string, env: NodeJS.ProcessEnv = process.env): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  let changed = false;
  for (const [param, name] of Object.entries(TLS_ENV)) {
    const value = env[name];
    if (value && !u.searchParams.has(param)) {
      u.searchParams.set(param, value);
      changed = true;
    }
  }
  return changed ? u.toString() : url;
}

/** The pg connection settings for `url` (used by the pool and by dedicated clients such as the listener). */
export function clientConfig(opts: PgOptions): pg.ClientConfig {
  const envTimeout = Number(process.env.PGCONNECT_TIMEOUT);
  return {
    connectionString: withTlsEnv(opts.url),
    types: agentctlTypes(),
    application_name: opts.applicationName ?? 'agentctl',
    connectionTimeoutMillis: opts.connectTimeoutMs ?? (envTimeout > 0 ? envTimeout * 1000 : 10_000),
  };
}

/** SQLSTATEs after which a transaction is retried as a whole. */
const RETRYABLE = new Set(['40001', '40P01']);

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);

/** Whether `err` means the server could not be reached or the connection was lost (not an SQL error). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  return (
    CONNECTION_CODES.has(code) ||
    code.startsWith('08') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    /Connection terminated|timeout expired|connect ECONNREFUSED|Client has encountered a connection error/i.test(message)
  );
}

/**
 * The one line a person reads for a failure to use the server at all: unreachable, refused credentials, missing
 * database (OperationError, exit 1, the URL redacted). Any other error (an SQL error of a statement) is returned
 * as it is, for the caller to judge.
 */
export function describePgError(err: unknown, url: string): unknown {
  if (err instanceof OperationError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const where = redactUrl(url);
  if (code === '28P01' || code === '28000') {
    return new OperationError(`PostgreSQL at ${where} refused the credentials: ${message} (set the password in PGPASSWORD or ~/.pgpass)`, { cause: err, code: 'E_DB_AUTH' });
  }
  if (code === '3D000') {
    return new OperationError(`PostgreSQL database at ${where} does not exist: ${message} (create it first, for example with createdb; agentctl creates its tables in it)`, { cause: err, code: 'E_DB_MISSING' });
  }
  if (/password authentication failed|no password supplied|SASL|SCRAM/i.test(message) && !code) {
    return new OperationError(`PostgreSQL at ${where} refused the credentials: ${message}`, { cause: err, code: 'E_DB_AUTH' });
  }
  if (!/^[0-9A-Z]{5}$/.test(code) && /\bSSL\b|certificate|\bTLS\b/i.test(message)) {
    return new OperationError(`cannot open a TLS connection to PostgreSQL at ${where}: ${message} (see sslmode in the URL, PGSSLMODE)`, { cause: err, code: 'E_DB_TLS' });
  }
  if (isConnectionError(err)) {
    return new OperationError(`cannot reach PostgreSQL at ${where}: ${message}`, { cause: err, code: 'E_DB_UNREACHABLE' });
  }
  return err;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type Queryable = pg.Pool | pg.PoolClient;

/** Runs one statement with SQLite-style placeholders on a pool or one of its clients. */
async function exec(q: Queryable, url: string, sql: string, args: SqlArgs | undefined): Promise<pg.QueryResult> {
  const r = rewrite(sql);
  const values = bind(r, args);
  try {
    return await q.query({ text: r.text, values });
  } catch (err) {
    throw describePgError(err, url);
  }
}

let cursors = 0;

export class PgExecutor implements Sql {
  readonly dialect = 'postgres' as const;
  constructor(
    readonly pool: pg.Pool,
    protected readonly url: string,
    protected readonly retry: RetryPolicy,
    /** Inside tx/read: the one client every statement runs on. */
    private readonly client?: pg.PoolClient,
  ) {}

  private get q(): Queryable {
    return this.client ?? this.pool;
  }

  async all<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T[]> {
    return (await exec(this.q, this.url, sql, args)).rows as T[];
  }

  async get<T = Record<string, unknown>>(sql: string, args?: SqlArgs): Promise<T | undefined> {
    return (await exec(this.q, this.url, sql, args)).rows[0] as T | undefined;
  }

  async run(sql: string, args?: SqlArgs): Promise<RunResult> {
    return { changes: (await exec(this.q, this.url, sql, args)).rowCount ?? 0 };
  }

  async *batches<T = Record<string, unknown>>(sql: string, args?: SqlArgs, batch = 1000): AsyncIterable<T[]> {
    const r = rewrite(sql);
    const values = bind(r, args);
    const size = Math.max(1, Math.floor(batch));
    const name = `agentctl_cursor_${++cursors}`;
    const own = !this.client;
    const client = this.client ?? (await this.connect());
    let open = false;
    try {
      if (own) await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await client.query({ text: `DECLARE ${name} NO SCROLL CURSOR FOR ${r.text}`, values });
      open = true;
      for (;;) {
        const res = await client.query(`FETCH ${size} FROM ${name}`);
        if (res.rows.length) yield res.rows as T[];
        if (res.rows.length < size) break;
      }
      await client.query(`CLOSE ${name}`);
      open = false;
      if (own) await client.query('COMMIT');
    } catch (err) {
      throw describePgError(err, this.url);
    } finally {
      if (own) {
        // Stopped early (break, an error): end the transaction, then give the client back.
        try {
          await client.query('ROLLBACK');
        } catch {
          /* the connection is gone; release drops it */
        }
        client.release();
      } else if (open) {
        await client.query(`CLOSE ${name}`).catch(() => undefined);
      }
    }
  }

  private async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw describePgError(err, this.url);
    }
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.client) return fn(this);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once('BEGIN', fn);
      } catch (err) {
        const code = (err as { code?: unknown } | null)?.code;
        if (typeof code === 'string' && RETRYABLE.has(code) && attempt < this.retry.attempts) {
          await sleep(backoffDelay(this.retry, attempt + 1));
          continue;
        }
        throw err;
      }
    }
  }

  async read<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.client) return fn(this);
    return this.once('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', fn);
  }

  /** One transaction on one client: BEGIN, fn, COMMIT (ROLLBACK on any error); a broken client is not reused. */
  private async once<T>(begin: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    const client = await this.connect();
    let broken: Error | undefined;
    try {
      try {
        await client.query(begin);
      } catch (err) {
        broken = err as Error;
        throw describePgError(err, this.url);
      }
      const inner = new PgExecutor(this.pool, this.url, this.retry, client);
      let result: T;
      try {
        result = await fn(inner);
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr as Error;
        }
        throw err;
      }
      try {
        await client.query('COMMIT');
      } catch (err) {
        broken = err as Error;
        throw describePgError(err, this.url);
      }
      return result;
    } finally {
      client.release(broken && isConnectionError(broken) ? broken : undefined);
    }
  }

  async now(): Promise<number> {
    const row = await this.get<{ now: number }>(NOW_SQL);
    return row!.now;
  }

  async close(): Promise<void> {
    if (this.client) return;
    await this.pool.end();
  }
}

/** The server's clock in integer ms since the epoch (clock_timestamp(): the time of the call, not of the transaction). */
export const NOW_SQL = 'SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now';

/** A PostgreSQL executor and its pool. Nothing connects until the first statement. */
export function openPg(opts: PgOptions): PgExecutor {
  const pool = new Pool({ ...clientConfig(opts), max: opts.max ?? 10 });
  // An idle client whose connection dies (a server restart, pg_terminate_backend) is dropped from the pool; without
  // a listener its error would end the process.
  pool.on('error', () => undefined);
  return new PgExecutor(pool, opts.url, opts.retry ?? DEFAULT_PG_RETRY);
}
