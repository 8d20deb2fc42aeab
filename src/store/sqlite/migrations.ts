import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The schema migrations, in order. Append-only: a landed migration is never edited; add the next number instead.
 * The schema version of a database is the number of migrations applied (PRAGMA user_version).
 */
export const MIGRATIONS = ['0001_init', '0002_agents', '0003_monitor', '0004_deadline', '0005_refuse', '0006_tokens', '0007_hosts'] as const;

/** The schema version this build writes and understands. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The oldest schema version a reader of this build reads as it is (readers never migrate; see openReader). */
export const READABLE_FROM_VERSION = 4;

/** Marks a file as an agentctl database (PRAGMA application_id): 'AGCT'. */
export const APPLICATION_ID = 0x41474354;

/** Reads the SQL of one migration; only called when a database actually needs migrating, to keep start-up cheap. */
export function migrationSql(name: string): string {
  return readFileSync(fileURLToPath(new URL(`./migrations/${name}.sql`, import.meta.url)), 'utf8');
}
