// One scenario, two engines: the documented protocol statements of each engine behind one small interface, so a
// test written once runs against an SQLite file and a PostgreSQL database and compares what their triggers wrote.
import Database from 'better-sqlite3';
import { CLAIM_SQL, COMPLETE_SQL, EXPIRE_SQL, GOODBYE_SQL, HEARTBEAT_SQL, SEND_SQL, START_SQL, registerSql } from '../../src/store/protocol.js';
import { PG_CLAIM_SQL, PG_COMPLETE_SQL, PG_EXPIRE_SQL, PG_GOODBYE_SQL, PG_HEARTBEAT_SQL, PG_SEND_SQL, PG_START_SQL, pgRegisterSql } from '../../src/store/postgres/protocol.js';
import { openPg } from '../../src/store/postgres/executor.js';
import { migratePg } from '../../src/store/postgres/migrate.js';
import { cli, tempDb } from '../helpers.js';
import { freshDatabase } from './pg-helpers.js';

export type Statement = 'register' | 'heartbeat' | 'goodbye' | 'start' | 'send' | 'expire' | 'claim' | 'complete';

export interface Engine {
  name: 'sqlite' | 'postgres';
  /** Runs a protocol statement with these parameters (the engine's own clock for times); rows for RETURNING. */
  step(stmt: Statement, params: Record<string, unknown>): Promise<{ changes: number; rows: Record<string, unknown>[] }>;
  /** Arbitrary SQL that both engines understand. */
  all(sql: string, args?: unknown[]): Promise<Record<string, unknown>[]>;
  /** The agent's events as `from>to:reason`, oldest first. */
  history(name: string): Promise<string[]>;
  close(): Promise<void>;
}

const DEFAULTS = { intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000 };

const SQLITE: Record<Statement, string> = {
  register: registerSql(DEFAULTS),
  heartbeat: HEARTBEAT_SQL,
  goodbye: GOODBYE_SQL,
  start: START_SQL,
  send: SEND_SQL,
  expire: EXPIRE_SQL,
  claim: CLAIM_SQL,
  complete: COMPLETE_SQL,
};

const POSTGRES: Record<Statement, string> = {
  register: pgRegisterSql(DEFAULTS),
  heartbeat: PG_HEARTBEAT_SQL,
  goodbye: PG_GOODBYE_SQL,
  start: PG_START_SQL,
  send: PG_SEND_SQL,
  expire: PG_EXPIRE_SQL,
  claim: PG_CLAIM_SQL,
  complete: PG_COMPLETE_SQL,
};

/** The parameters a statement names (each once). */
export function paramsOf(sql: string): string[] {
  return [...new Set([...sql.matchAll(/(?<![:\w]):([a-z_]+)/g)].map((m) => m[1]!))];
}

/** Only the parameters `sql` takes, each bound (missing ones as NULL). */
function only(sql: string, params: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const all = { ...params, ...extra };
  return Object.fromEntries(paramsOf(sql).map((p) => [p, all[p] ?? null]));
}

const HISTORY = `SELECT from_state, to_state, reason FROM events WHERE agent_name = ? ORDER BY id`;
const line = (r: Record<string, unknown>) => `${r.from_state ?? 'null'}>${r.to_state}:${r.reason}`;

export async function sqliteEngine(): Promise<Engine> {
  const path = tempDb();
  const init = cli(['init'], { db: path });
  if (init.code !== 0) throw new Error(`agentctl init failed: ${init.stderr}`);
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  return {
    name: 'sqlite',
    async step(stmt, params) {
      const sql = SQLITE[stmt];
      const st = db.prepare(sql);
      const bound = only(sql, params, { now: Date.now() });
      if (st.reader) {
        const rows = st.all(bound) as Record<string, unknown>[];
        return { changes: rows.length, rows };
      }
      return { changes: st.run(bound).changes, rows: [] };
    },
    async all(sql, args = []) {
      return db.prepare(sql).all(...args) as Record<string, unknown>[];
    },
    async history(name) {
      return (db.prepare(HISTORY).all(name) as Record<string, unknown>[]).map(line);
    },
    async close() {
      db.close();
    },
  };
}

export async function postgresEngine(url?: string): Promise<Engine & { url: string }> {
  const dbUrl = url ?? (await freshDatabase());
  const sql = openPg({ url: dbUrl });
  await migratePg(sql, dbUrl);
  return {
    name: 'postgres',
    url: dbUrl,
    async step(stmt, params) {
      const text = POSTGRES[stmt];
      const bound = only(text, params);
      if (/RETURNING/.test(text)) {
        const rows = await sql.all(text, bound);
        return { changes: rows.length, rows };
      }
      return { ...(await sql.run(text, bound)), rows: [] };
    },
    async all(text, args = []) {
      return sql.all(text, args);
    },
    async history(name) {
      return (await sql.all(HISTORY, [name])).map(line);
    },
    async close() {
      await sql.close();
    },
  };
}
