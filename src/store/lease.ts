import type { Store } from './store.js';
import { type LockHandle, type LockOptions, withExclusiveLock } from './sqlite/lock.js';

/**
 * `fn` while this process holds the exclusive lease `opts.name` of `store`'s database (the health loop's 'monitor',
 * the 'maintenance' of cleanup and restart). On SQLite it is the lock file beside the database (withExclusiveLock);
 * on PostgreSQL an advisory lock on a dedicated connection (postgres/lease.ts): no file beside a URL. `handle.signal`
 * aborts if the lease is lost. Kept out of store.ts so that the heartbeat fast path, which never takes a lease, does
 * not load the lock code.
 *
 * On PostgreSQL the health loop takes no lease at all: any number of monitors, on any number of hosts, pass over one
 * database at once (each transition, outage and alert is decided once by the database itself: guarded writes, the
 * outage's unique index, the alert cursor and deliveries taken with SKIP LOCKED). The one-loop lock file is
 * SQLite's only.
 */
/** Loaded only for a database server (through a variable, as in open-store.ts: no bundle carries pg by accident). */
const PG_LEASE = './postgres/lease.js';

export async function exclusive<T>(store: Store, opts: LockOptions, fn: (handle: LockHandle) => Promise<T>): Promise<T> {
  if (store.isSqlite) return withExclusiveLock(store.path, opts, fn);
  if (opts.name === 'monitor') return fn({ signal: new AbortController().signal, lockPath: '' });
  const { withAdvisoryLease } = await (import(PG_LEASE) as Promise<typeof import('./postgres/lease.js')>);
  return withAdvisoryLease(store.path, opts, fn);
}
