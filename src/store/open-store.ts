import { DEFAULTS } from '../config.js';
import { openDatabase } from './sqlite/open.js';
import { SqliteEngine } from './sqlite/engine.js';
import { isPostgresUrl } from './engine.js';
import type { RetryPolicy } from './retry.js';
import { DEFAULT_CONTRACT, Store, type StoreOptions } from './store.js';

export { isPostgresUrl };

/**
 * Opens the store `opts` names and returns it: the one place where the engine is chosen. A PostgreSQL URL
 * (postgres://, postgresql://) opens that database (migrated for writers); anything else is the path of an SQLite
 * file (created and migrated if needed).
 */
export async function openStore(opts: StoreOptions): Promise<Store> {
  if (isPostgresUrl(opts.path)) return openPostgresStore(opts);
  return openSqliteStore(opts);
}

function retryOf(opts: StoreOptions): RetryPolicy {
  return {
    attempts: Math.max(1, Math.floor(opts.retryAttempts ?? DEFAULTS.retryAttempts)),
    factor: Math.max(1, opts.backoffFactor ?? DEFAULTS.backoffFactor),
    baseDelayMs: 50,
  };
}

/** The SQLite file at `opts.path`, created and migrated if needed. */
function openSqliteStore(opts: StoreOptions): Store {
  const retry = retryOf(opts);
  const db = openDatabase(opts.path, {
    busyTimeoutMs: opts.busyTimeoutMs ?? DEFAULTS.busyTimeoutMs,
    retry,
    mode: opts.mode ?? 'create',
    createDir: opts.createDir ?? false,
    migrate: opts.migrate ?? true,
  });
  const engine = new SqliteEngine(db, opts.path, retry, opts.fileCheckEveryMs ?? 100);
  return new Store(engine.sql, engine, opts.path, retry, opts.contract ?? DEFAULT_CONTRACT);
}

/**
 * Where the PostgreSQL engine lives, loaded only when a URL is opened: named through a variable so that the
 * heartbeat fast path's bundle (src/cli/fast.ts) neither contains nor loads pg. Its PostgreSQL twin
 * (src/cli/fast-pg.ts) imports the engine statically and gives it with providePostgres.
 */
const PG_OPEN = './postgres/open.js';
const PG_ENGINE = './postgres/engine.js';

interface PostgresModules {
  openPostgres: typeof import('./postgres/open.js').openPostgres;
  PgEngine: typeof import('./postgres/engine.js').PgEngine;
}

let provided: PostgresModules | undefined;

/** The PostgreSQL engine given by a bundle that imports it statically (the heartbeat fast path's), for openStore to use. */
export function providePostgres(modules: PostgresModules): void {
  provided = modules;
}

/** The PostgreSQL database at the URL `opts.path`. */
async function openPostgresStore(opts: StoreOptions): Promise<Store> {
  const retry = retryOf(opts);
  const [{ openPostgres }, { PgEngine }] = provided
    ? [provided, provided]
    : await Promise.all([
        import(PG_OPEN) as Promise<typeof import('./postgres/open.js')>,
        import(PG_ENGINE) as Promise<typeof import('./postgres/engine.js')>,
      ]);
  const mode = opts.mode ?? 'create';
  const sql = await openPostgres(opts.path, { mode, retry, migrate: opts.migrate ?? true });
  const engine = new PgEngine(sql, opts.path, { writable: mode !== 'read' });
  return new Store(sql, engine, opts.path, retry, opts.contract ?? DEFAULT_CONTRACT);
}
