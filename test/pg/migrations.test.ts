import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { openPg } from '../../src/store/postgres/executor.js';
import { PG_SCHEMA_VERSION, migratePg, pgMigrationSql, readPgSchema } from '../../src/store/postgres/migrate.js';
import { DatabaseUnusableError, MigrationNeededError } from '../../src/errors.js';
import { ExitCode } from '../../src/exit-codes.js';
import { SCHEMA_VERSION } from '../../src/store/sqlite/migrations.js';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DIST, cli, exited, start, tempDb } from '../helpers.js';
import { freshDatabase, query } from './pg-helpers.js';

/** Everything a refusal must leave as it was: every relation, column, function and trigger, and the mark. */
async function catalog(url: string): Promise<unknown> {
  return {
    columns: await query(url, `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`),
    functions: await query(url, `SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1`),
    triggers: await query(url, `SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`),
    mark: await query(url, `SELECT to_regclass('agentctl_schema') IS NOT NULL AS marked`),
  };
}

async function open(url: string, opts: { migrate?: boolean } = {}) {
  const sql = openPg({ url });
  try {
    return await migratePg(sql, url, opts);
  } finally {
    await sql.close();
  }
}

describe('PostgreSQL migrations', () => {
  it('a fresh database gets schema version 7, the one number both engines share, and the agentctl mark; a second open changes nothing', async () => {
    const url = await freshDatabase();
    expect(PG_SCHEMA_VERSION).toBe(SCHEMA_VERSION);
    expect(await open(url)).toEqual({ from: 0, to: 7, applied: ['0006_postgres', '0007_hosts'] });
    expect(await query(url, 'SELECT application, version FROM agentctl_schema')).toEqual([{ application: 'agentctl', version: 7 }]);
    expect(await query(url, `SELECT obj_description('agentctl_schema'::regclass) AS c`)).toEqual([{ c: expect.stringMatching(/^agentctl/) }]);
    const before = await catalog(url);
    expect(await open(url)).toEqual({ from: 7, to: 7, applied: [] });
    expect(await catalog(url)).toEqual(before);
  });

  it('opening a current database reads its mark in one statement, outside any transaction (no migration lock)', async () => {
    const url = await freshDatabase();
    await open(url);
    const sql = openPg({ url });
    const calls: string[] = [];
    // The executor itself, every call it is given counted by name: the real statements run on the real server.
    const counted = new Proxy(sql, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function' || !['all', 'get', 'run', 'tx', 'read', 'batches'].includes(String(prop))) return v;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    try {
      expect(await migratePg(counted, url)).toEqual({ from: 7, to: 7, applied: [] });
      expect(calls).toEqual(['get']);
      // A reader's open as well; and a database without the mark is still read (and refused or migrated) as before.
      calls.length = 0;
      expect(await migratePg(counted, url, { migrate: false })).toEqual({ from: 7, to: 7, applied: [] });
      expect(calls).toEqual(['get']);
    } finally {
      await sql.close();
    }
  });

  it('upgrades a version 6 database to 7 in place: only 0007_hosts is applied and every row is kept', async () => {
    const url = await freshDatabase();
    await query(url, pgMigrationSql('0006_postgres'));
    await query(url, "INSERT INTO agentctl_schema (one, application, version, migrated_at) VALUES (true, 'agentctl', 6, agentctl_now_ms())");
    await query(url, "INSERT INTO alerts (agent_name, kind, state, created_at, payload) VALUES ('kept', 'alert', 'offline', 1700000000000, '{}')");
    expect(await open(url)).toEqual({ from: 6, to: 7, applied: ['0007_hosts'] });
    expect(await query(url, 'SELECT agent_name, outage_id FROM alerts')).toEqual([{ agent_name: 'kept', outage_id: null }]);
    expect(await query(url, 'SELECT count(*)::int AS n FROM health_loops')).toEqual([{ n: 0 }]);
    // One open outage per host: a second open one for the same host is refused, an ended one is not.
    await query(url, `INSERT INTO host_outages (host, detected_at, silent_since, agents, agent_names) VALUES ('h', 1, 1, 2, '[]')`);
    const dup = await query(url, `INSERT INTO host_outages (host, detected_at, silent_since, agents, agent_names) VALUES ('h', 2, 2, 2, '[]') ON CONFLICT (host) WHERE ended_at IS NULL DO NOTHING RETURNING id`);
    expect(dup).toEqual([]);
    await query(url, `UPDATE host_outages SET ended_at = 3`);
    expect(await query(url, `INSERT INTO host_outages (host, detected_at, silent_since, agents, agent_names) VALUES ('h', 4, 4, 2, '[]') ON CONFLICT (host) WHERE ended_at IS NULL DO NOTHING RETURNING host`)).toEqual([{ host: 'h' }]);
  });

  it('has every table, column and index of the SQLite schema (and only the documented additions)', async () => {
    const path = tempDb();
    expect(cli(['init'], { db: path }).code).toBe(0);
    const lite = new Database(path, { readonly: true });
    const liteTables = (lite.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
    const liteColumns = Object.fromEntries(liteTables.map((t) => [t, (lite.prepare(`SELECT name FROM pragma_table_xinfo(?) ORDER BY name`).all(t) as { name: string }[]).map((r) => r.name)]));
    const liteIndexes = (lite.prepare(`SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
    const liteTriggers = (lite.prepare(`SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
    lite.close();

    const url = await freshDatabase();
    await open(url);
    const pgTables = (await query<{ t: string }>(url, `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)).map((r) => r.t);
    expect(pgTables).toEqual([...liteTables, 'agentctl_schema'].sort());
    for (const t of liteTables) {
      const cols = (await query<{ c: string }>(url, `SELECT column_name AS c FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY 1`, [t])).map((r) => r.c);
      const extra = t === 'agents' ? ['clock_offset_ms', 'writer_clock_at'] : [];
      expect({ t, cols }).toEqual({ t, cols: [...liteColumns[t]!, ...extra].sort() });
    }
    const pgIndexes = (await query<{ i: string }>(url, `SELECT indexname AS i FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key' ORDER BY 1`)).map((r) => r.i);
    expect(pgIndexes).toEqual(liteIndexes);
    const pgTriggers = (await query<{ t: string }>(url, `SELECT tgname AS t FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`)).map((r) => r.t);
    expect(pgTriggers).toEqual([...liteTriggers, 'agents_heartbeat_stamp', 'events_in_commit_order', 'events_notify'].sort());
  });

  it('eight processes opening a new database at once all succeed, and exactly one migrates it', async () => {
    const url = await freshDatabase();
    // Each a node process of its own, with its own pool (the built code, as the CLI runs it).
    const script = `
      const { openPg } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'store/postgres/executor.js')).href)});
      const { migratePg } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'store/postgres/migrate.js')).href)});
      const sql = openPg({ url: process.argv[1] });
      try { console.log(JSON.stringify(await migratePg(sql, process.argv[1]))); } finally { await sql.close(); }`;
    const children = Array.from({ length: 8 }, () => start(process.execPath, ['--input-type=module', '-e', script, url]));
    const results = [];
    for (const c of children) {
      const r = await exited(c);
      expect({ code: r.code, stderr: c.errors() }).toEqual({ code: 0, stderr: '' });
      results.push(JSON.parse(c.output().trim()) as { to: number; applied: string[] });
    }
    expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
    expect(results.every((r) => r.to === 7)).toBe(true);
    expect(await query(url, 'SELECT version FROM agentctl_schema')).toEqual([{ version: 7 }]);
    expect(await query(url, `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'agents'`)).toEqual([{ n: 1 }]);
  });

  it('refuses a newer schema with exit 4 and leaves the database unchanged', async () => {
    const url = await freshDatabase();
    await open(url);
    await query(url, 'UPDATE agentctl_schema SET version = 8');
    const before = await catalog(url);
    const err = await open(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseUnusableError);
    expect(err).toMatchObject({ exitCode: ExitCode.DB_UNUSABLE });
    expect((err as Error).message).toMatch(/schema version 8 is newer than this agentctl \(7\)/);
    expect(await catalog(url)).toEqual(before);
    expect(await query(url, 'SELECT version FROM agentctl_schema')).toEqual([{ version: 8 }]);
  });

  it("refuses another application's database (tables, no agentctl mark) with exit 4 and leaves it unchanged", async () => {
    const url = await freshDatabase();
    await query(url, 'CREATE TABLE customers (id int PRIMARY KEY, name text)');
    const before = await catalog(url);
    const err = await open(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseUnusableError);
    expect(err).toMatchObject({ exitCode: ExitCode.DB_UNUSABLE });
    expect((err as Error).message).toMatch(/another application \(it has 1 table\(s\) but no agentctl mark\); it was left untouched/);
    expect(await catalog(url)).toEqual(before);
  });

  it('a reader (migrate: false) does not create the schema', async () => {
    const url = await freshDatabase();
    await expect(open(url, { migrate: false })).rejects.toBeInstanceOf(MigrationNeededError);
    const sql = openPg({ url });
    expect(await readPgSchema(sql)).toEqual({ version: 0, application: null, relations: 0 });
    await sql.close();
  });

  it('refuses what the SQLite schema refuses: times in seconds, bad names, half identities', async () => {
    const url = await freshDatabase();
    await open(url);
    const insert = (cols: string) => query(url, `INSERT INTO agents (name, state_since, created_at, started_at, updated_at${cols ? ', ' + cols.split('=')[0] : ''}) VALUES ($1, $2, $2, $2, $2${cols ? ', ' + cols.split('=')[1] : ''})`, ['ok-1', Date.now()]);
    await insert('');
    await expect(query(url, `INSERT INTO agents (name, state_since, created_at, started_at, updated_at) VALUES ('s', 1733000000, 1733000000, 1733000000, 1733000000)`)).rejects.toMatchObject({ code: '23514' });
    await expect(query(url, `INSERT INTO agents (name, state_since, created_at, started_at, updated_at) VALUES ('-bad', $1, $1, $1, $1)`, [Date.now()])).rejects.toMatchObject({ code: '23514' });
    await expect(query(url, `INSERT INTO agents (name, pid, state_since, created_at, started_at, updated_at) VALUES ('half', 42, $1, $1, $1, $1)`, [Date.now()])).rejects.toMatchObject({ code: '23514' });
    await expect(query(url, `UPDATE agents SET progress = 'abc' WHERE name = 'ok-1'`)).rejects.toMatchObject({ code: '22P02' });
    await expect(query(url, `UPDATE agents SET metadata = '[1]' WHERE name = 'ok-1'`)).rejects.toMatchObject({ code: '23514' });
    await expect(query(url, `UPDATE agents SET reported_status = 'weird' WHERE name = 'ok-1'`)).rejects.toMatchObject({ code: '23514' });
  });
});
