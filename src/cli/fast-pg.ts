import { openPostgres } from '../store/postgres/open.js';
import { PgEngine } from '../store/postgres/engine.js';
import { providePostgres } from '../store/open-store.js';
import { fastHeartbeat as heartbeat } from './fast.js';

providePostgres({ openPostgres, PgEngine });

/**
 * The heartbeat fast path for a PostgreSQL URL, bundled (dist/fast-heartbeat-pg.cjs) with the PostgreSQL engine
 * imported statically, so that it loads as one file; pg itself is loaded from node_modules. A database with its
 * schema to create or migrate returns null before any write, and the full CLI does that.
 */
export function fastHeartbeat(args: string[]): Promise<number | null | 'postgres'> {
  return heartbeat(args, { postgres: true });
}
