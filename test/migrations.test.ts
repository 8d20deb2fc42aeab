import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { openStore } from '../src/store/store.js';
import { APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, migrationSql } from '../src/store/migrations.js';
import { GOODBYE_SQL, HEARTBEAT_SQL, SEND_SQL, START_SQL, registerSql } from '../src/store/protocol.js';
import { tempDb } from './helpers.js';

const T0 = 1_800_000_000_000;
const CONTRACT = { intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000 };

/** A database as an older build left it: the first `version` migrations applied, nothing after. */
function databaseAtVersion(path: string, version: number): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  db.exec('BEGIN IMMEDIATE');
  for (const name of MIGRATIONS.slice(0, version)) db.exec(migrationSql(name));
  db.pragma(`application_id = ${APPLICATION_ID}`);
  db.pragma(`user_version = ${version}`);
  db.exec('COMMIT');
  return db;
}

function register(db: Database.Database, name: string, now: number, extra: Record<string, unknown> = {}): void {
  db.prepare(registerSql(CONTRACT)).run({
    name, group_name: null, interval_ms: null, stale_multiplier: null, offline_after_ms: null, pid: null,
    pid_start_time: null, host: null, boot_id: null, metadata: null, launch_argv: null, launch_cwd: null, now, ...extra,
  });
}

function beat(db: Database.Database, name: string, now: number): void {
  expect(db.prepare(HEARTBEAT_SQL).run({ name, now, status: null, message: null, metadata: null, progress: 7 }).changes).toBe(1);
}

/** The main program of a statement's bytecode (trigger subprograms are listed after it, numbered from 0 again). */
function mainProgram(db: Database.Database, sql: string, params: Record<string, unknown> = {}): { addr: number; opcode: string }[] {
  const rows = db.prepare(`EXPLAIN ${sql}`).all(params) as { addr: number; opcode: string }[];
  const end = rows.findIndex((r, i) => i > 0 && r.addr <= rows[i - 1]!.addr);
  return end < 0 ? rows : rows.slice(0, end);
}

describe('migrations', () => {
  it('upgrades a version 3 database in place: every row, event and command kept; deadlines count from a restart', () => {
    const path = tempDb();
    const old = databaseAtVersion(path, 3);
    // One agent in each kind of deadline: beating, never beat, stale by the clock, gone offline, in maintenance,
    // and restarted (a new incarnation that has not beaten yet).
    for (const name of ['beating', 'silent', 'late', 'gone', 'paused', 'restarted']) register(old, name, T0, { interval_ms: name === 'late' ? 1000 : null });
    beat(old, 'beating', T0 + 10_000);
    beat(old, 'late', T0 + 1_000);
    beat(old, 'gone', T0 + 2_000);
    old.prepare(GOODBYE_SQL).run({ name: 'gone', now: T0 + 3_000, message: 'bye' });
    old.prepare(`UPDATE agents SET state = 'maintenance', state_since = :now, state_reason = 'test', maintenance_until = :until WHERE name = 'paused'`)
      .run({ now: T0 + 4_000, until: T0 + 60_000 });
    old.prepare(SEND_SQL).run({ name: 'beating', payload: '{"do":"x"}', now: T0 + 5_000, deadline_at: null });
    beat(old, 'restarted', T0 + 1_000);
    old.prepare(START_SQL).run({ name: 'restarted', restarted: 1, pid: null, pid_start_time: null, host: null, boot_id: null, reason: 'restarted', evidence: null, now: T0 + 50_000 });
    const deadlines = (db: Database.Database) => db.prepare('SELECT name, check_at, due_at FROM agents ORDER BY id').all() as { name: string; check_at: number | null; due_at: number }[];
    const snapshot = (db: Database.Database) => ({
      agents: db.prepare('SELECT * FROM agents ORDER BY id').all().map((row) => ({ ...(row as object), check_at: undefined, due_at: undefined })),
      events: db.prepare('SELECT agent_name, from_state, to_state, reason, at FROM events ORDER BY id').all(),
      commands: db.prepare('SELECT agent_id, payload, state FROM commands ORDER BY id').all(),
    });
    const before = snapshot(old);
    // The deadlines as version 3 computed them: the restarted agent's from its predecessor's last heartbeat.
    expect(deadlines(old).map((a) => [a.name, a.check_at])).toEqual([
      ['beating', T0 + 10_000 + 90_000],
      ['silent', T0 + 90_000],
      ['late', T0 + 1_000 + 3_000],
      ['gone', null],
      ['paused', null],
      ['restarted', T0 + 1_000 + 90_000],
    ]);
    old.close();

    const s = openStore({ path });
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(snapshot(s.db)).toEqual(before);
    // The same deadlines, except the restarted agent's, which now counts from its restart.
    expect(deadlines(s.db)).toEqual([
      { name: 'beating', check_at: T0 + 10_000 + 90_000, due_at: T0 + 10_000 + 90_000 },
      { name: 'silent', check_at: T0 + 90_000, due_at: T0 + 90_000 },
      { name: 'late', check_at: T0 + 1_000 + 3_000, due_at: T0 + 1_000 + 3_000 },
      { name: 'gone', check_at: null, due_at: T0 + 2_000 + 90_000 },
      { name: 'paused', check_at: null, due_at: T0 + 90_000 },
      { name: 'restarted', check_at: T0 + 50_000 + 90_000, due_at: T0 + 50_000 + 90_000 },
    ]);
    expect(s.db.pragma('quick_check', { simple: true })).toBe('ok');
    expect(s.db.pragma('foreign_key_check')).toEqual([]);
    // The health loop still reads what is due through the index.
    const plan = s.db.prepare('EXPLAIN QUERY PLAN SELECT * FROM agents WHERE check_at <= ?').all(T0) as { detail: string }[];
    expect(plan.map((p) => p.detail).join('\n')).toMatch(/USING INDEX agents_check/);
    // And the deadline keeps following the agent: a heartbeat moves it, going offline clears it.
    s.heartbeat({ name: 'beating' }, T0 + 20_000);
    expect(s.db.prepare("SELECT check_at FROM agents WHERE name = 'beating'").pluck().get()).toBe(T0 + 20_000 + 90_000);
    s.db.prepare(GOODBYE_SQL).run({ name: 'beating', now: T0 + 21_000, message: null });
    expect(s.db.prepare("SELECT check_at FROM agents WHERE name = 'beating'").pluck().get()).toBeNull();
    s.close();
  });

  it('the deadline a heartbeat rewrites builds no temporary b-tree (an IN list of three or more constants would)', () => {
    const s = openStore({ path: tempDb() });
    s.heartbeat({ name: 'a' }, T0);
    const deadline = mainProgram(s.db, 'SELECT check_at FROM agents');
    expect(deadline.length).toBeGreaterThan(3);
    expect(deadline.filter((op) => op.opcode === 'OpenEphemeral')).toEqual([]);
    // The heartbeat itself: at most the one for 0001's CHECK (reported_status IN ('ok', 'busy', 'error')), which
    // only a rebuild of the agents table could change. 0003's deadline added two more, and halved the rate of
    // eight concurrent writers.
    const heartbeat = mainProgram(s.db, HEARTBEAT_SQL, { name: 'a', now: T0, status: null, message: null, metadata: null, progress: null });
    expect(heartbeat.some((op) => op.opcode === 'IdxInsert')).toBe(true);
    expect(heartbeat.filter((op) => op.opcode === 'OpenEphemeral').length).toBeLessThanOrEqual(1);
    s.close();
  });
});
