import { DEFAULTS } from '../config.js';
import { UsageError } from '../errors.js';
import { openDatabase } from './sqlite/open.js';
import type { RetryPolicy } from './retry.js';
import { DEFAULT_CONTRACT, Store, type StoreOptions } from './store.js';

/**
 * Opens the store `opts` names and returns it: the one place where the engine is chosen. Today every store is an
 * SQLite file (created and migrated if needed); a PostgreSQL URL (postgres://, postgresql://) will select that
 * engine here, beneath the same Store.
 */
export async function openStore(opts: StoreOptions): Promise<Store> {
  if (/^postgres(ql)?:\/\//i.test(opts.path)) throw new UsageError('PostgreSQL databases are not supported by this build yet: give the path of an SQLite file');
  return openSqliteStore(opts);
}

/** The SQLite file at `opts.path`, created and migrated if needed. */
function openSqliteStore(opts: StoreOptions): Store {
  const retry: RetryPolicy = {
    attempts: Math.max(1, Math.floor(opts.retryAttempts ?? DEFAULTS.retryAttempts)),
    factor: Math.max(1, opts.backoffFactor ?? DEFAULTS.backoffFactor),
    baseDelayMs: 50,
  };
  const db = openDatabase(opts.path, {
    busyTimeoutMs: opts.busyTimeoutMs ?? DEFAULTS.busyTimeoutMs,
    retry,
    mode: opts.mode ?? 'create',
    createDir: opts.createDir ?? false,
    migrate: opts.migrate ?? true,
  });
  return new Store(db, opts.path, retry, opts.contract ?? DEFAULT_CONTRACT, opts.fileCheckEveryMs ?? 100);
}
