import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { redactUrl } from '../../core/redact.js';
import { DatabaseUnusableError, MigrationNeededError } from '../../errors.js';
import { SCHEMA_VERSION } from '../sqlite/migrations.js';
import type { Sql } from '../sql.js';

/**
 * PostgreSQL's migrations, in order, append-only like SQLite's. The schema version is one number for both
 * engines: the first file creates at once what SQLite's 0001–0006 made and records version 6; a later change
 * lands as 0007 on both. A file's version is its number.
 */
export const PG_MIGRATIONS = ['0006_postgres', '0007_hosts'] as const;

/** The schema version this build writes on PostgreSQL: the same as on SQLite. */
export const PG_SCHEMA_VERSION = Number(PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.slice(0, 4));
if (PG_SCHEMA_VERSION !== SCHEMA_VERSION) throw new Error(`PostgreSQL's schema version ${PG_SCHEMA_VERSION} is not SQLite's ${SCHEMA_VERSION}`);

/** The application agentctl_schema names. */
export const PG_APPLICATION = 'agentctl';

/** The advisory lock every migration holds (pg_advisory_xact_lock): 'AGCT', as SQLite's application_id. */
export const PG_MIGRATION_LOCK = 0x41474354;

export function pgMigrationSql(name: string): string {
  return readFileSync(fileURLToPath(new URL(`./migrations/${name}.sql`, import.meta.url)), 'utf8');
}

export interface PgSchemaState {
  /** 0: no agentctl_schema row. */
  version: number;
  /** The application agentctl_schema names, or null when there is none. */
  application: string | null;
  /** Tables, views and sequences in the current schema other than agentctl_schema. */
  relations: number;
}

/** Tables, views and sequences in the current schema other than agentctl_schema, counted in SQL. */
const RELATIONS_SQL = `(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND c.relname <> 'agentctl_schema')`;

/** What the database holds, read in two statements (no lock, nothing written): safe inside a transaction. */
export async function readPgSchema(sql: Sql): Promise<PgSchemaState> {
  const row = await sql.get<{ marked: boolean; relations: number }>(
    `SELECT to_regclass('agentctl_schema') IS NOT NULL AS marked, ${RELATIONS_SQL} AS relations`,
  );
  if (!row?.marked) return { version: 0, application: null, relations: Number(row?.relations ?? 0) };
  const mark = await sql.get<{ application: string; version: number }>('SELECT application, version FROM agentctl_schema');
  return { version: Number(mark?.version ?? 0), application: mark?.application ?? null, relations: Number(row.relations) };
}

/**
 * What the database holds, read in one round trip when it carries agentctl's mark (every open after the first):
 * the mark and the count of relations in one statement. A database without the table (new, or another
 * application's) answers that statement with an error and is read as readPgSchema reads it. Outside a
 * transaction only: the error would end one.
 */
export async function readPgSchemaAtOpen(sql: Sql): Promise<PgSchemaState> {
  let mark: { application: string; version: number; relations: number } | undefined;
  try {
    mark = await sql.get(`SELECT application, version, ${RELATIONS_SQL} AS relations FROM agentctl_schema`);
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code !== '42P01') throw err; // undefined_table
  }
  if (!mark) return readPgSchema(sql);
  return { version: Number(mark.version), application: mark.application, relations: Number(mark.relations) };
}

/** Refuses (exit 4, nothing written) another application's database or a newer schema. */
function judge(state: PgSchemaState, url: string): void {
  const where = redactUrl(url);
  if (state.application !== null && state.application !== PG_APPLICATION) {
    throw new DatabaseUnusableError(where, `it belongs to another application (${state.application}); it was left untouched`);
  }
  if (state.application === null && state.relations > 0) {
    throw new DatabaseUnusableError(where, `it is a PostgreSQL database of another application (it has ${state.relations} table(s) but no agentctl mark); it was left untouched`);
  }
  if (state.version > PG_SCHEMA_VERSION) {
    throw new DatabaseUnusableError(where, `its schema version ${state.version} is newer than this agentctl (${PG_SCHEMA_VERSION}); upgrade agentctl. The database was left untouched`);
  }
}

export interface PgMigrateResult {
  from: number;
  to: number;
  /** The migrations this call applied (none when the database was current, or another process migrated it). */
  applied: string[];
}

/**
 * Checks the database and applies pending migrations: in one transaction under pg_advisory_xact_lock, re-reading
 * the version under the lock, so that any number of processes opening a new database at once all succeed and the
 * migrations run once. `migrate: false` (readers) throws MigrationNeededError instead of migrating.
 */
export async function migratePg(sql: Sql, url: string, opts: { migrate?: boolean } = {}): Promise<PgMigrateResult> {
  const seen = await readPgSchemaAtOpen(sql);
  judge(seen, url);
  if (seen.version === PG_SCHEMA_VERSION) return { from: seen.version, to: seen.version, applied: [] };
  if (opts.migrate === false) throw new MigrationNeededError(redactUrl(url), seen.version);
  return sql.tx(async (tx) => {
    await tx.get('SELECT pg_advisory_xact_lock(?)', [PG_MIGRATION_LOCK]);
    // Read again under the lock: another process may have migrated since we looked.
    const state = await readPgSchema(tx);
    judge(state, url);
    const applied: string[] = [];
    for (const name of PG_MIGRATIONS) {
      const version = Number(name.slice(0, 4));
      if (version <= state.version) continue;
      await tx.run(pgMigrationSql(name));
      await tx.run(
        `INSERT INTO agentctl_schema (one, application, version, migrated_at) VALUES (true, ?, ?, agentctl_now_ms())
         ON CONFLICT (one) DO UPDATE SET version = excluded.version, migrated_at = excluded.migrated_at`,
        [PG_APPLICATION, version],
      );
      applied.push(name);
    }
    return { from: state.version, to: PG_SCHEMA_VERSION, applied };
  });
}
