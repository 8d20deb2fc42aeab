import { redactUrl } from '../../core/redact.js';
import { OperationError } from '../../errors.js';
import type { RetryPolicy } from '../retry.js';
import { type PgExecutor, openPg } from './executor.js';
import { type PgMigrateResult, migratePg } from './migrate.js';

export { isPostgresUrl } from '../engine.js';

export interface OpenPostgresOptions {
  /**
   * 'create' and 'existing' check the database and apply pending migrations (PostgreSQL cannot create the database
   * itself, so both need it to exist); 'read' migrates nothing and refuses a database without agentctl's tables.
   */
  mode: 'create' | 'existing' | 'read';
  /** false: a writer's open throws MigrationNeededError instead of migrating (default: true). */
  migrate?: boolean;
  retry?: RetryPolicy;
  max?: number;
  applicationName?: string;
}

/**
 * Opens an agentctl database on PostgreSQL: connects (one line, exit 1, for an unreachable server, refused
 * credentials or a missing database), refuses another application's database or a newer schema (exit 4,
 * untouched), and migrates it (writers) or refuses an empty one (readers).
 */
export async function openPostgres(url: string, opts: OpenPostgresOptions): Promise<PgExecutor & { migrated: PgMigrateResult | null }> {
  const sql = openPg({ url, retry: opts.retry, max: opts.max, applicationName: opts.applicationName });
  try {
    let migrated: PgMigrateResult | null = null;
    if (opts.mode === 'read') {
      try {
        await migratePg(sql, url, { migrate: false });
      } catch (err) {
        if ((err as { code?: string }).code === 'E_MIGRATION_NEEDED') {
          throw new OperationError(`PostgreSQL database at ${redactUrl(url)} has no agentctl tables yet (create them with 'agentctl init --db URL'; the first 'agentctl register' or 'agentctl heartbeat' does too)`, { code: 'E_DB_MISSING' });
        }
        throw err;
      }
    } else {
      migrated = await migratePg(sql, url, { migrate: opts.migrate ?? true });
    }
    return Object.assign(sql, { migrated });
  } catch (err) {
    await sql.close().catch(() => undefined);
    throw err;
  }
}
