import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { openStore } from '../src/store/store.js';
import { SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';
import { GOODBYE_SQL, HEARTBEAT_SQL, SEND_SQL, START_SQL, registerSql } from '../src/store/protocol.js';
import { databaseAtVersion, tempDb } from './helpers.js';

const T0 = 1_800_000_000_000;
const CONTRACT = { intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000 };


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
  it('upgrades a version 3 database in place: every row, event and command kept; deadlines count from a restart', async () => {
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

    const s = await openStore({ path });
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
    await s.heartbeat({ name: 'beating' }, T0 + 20_000);
    expect(s.db.prepare("SELECT check_at FROM agents WHERE name = 'beating'").pluck().get()).toBe(T0 + 20_000 + 90_000);
    s.db.prepare(GOODBYE_SQL).run({ name: 'beating', now: T0 + 21_000, message: null });
    expect(s.db.prepare("SELECT check_at FROM agents WHERE name = 'beating'").pluck().get()).toBeNull();
    await s.close();
  });

  it('the deadline a heartbeat rewrites builds no temporary b-tree (an IN list of three or more constants would)', async () => {
    const s = await openStore({ path: tempDb() });
    await s.heartbeat({ name: 'a' }, T0);
    const deadline = mainProgram(s.db, 'SELECT check_at FROM agents');
    expect(deadline.length).toBeGreaterThan(3);
    expect(deadline.filter((op) => op.opcode === 'OpenEphemeral')).toEqual([]);
    // The heartbeat itself: at most the one for 0001's CHECK (reported_status IN ('ok', 'busy', 'error')), which
    // only a rebuild of the agents table could change. 0003's deadline added two more, and halved the rate of
    // eight concurrent writers.
    const heartbeat = mainProgram(s.db, HEARTBEAT_SQL, { name: 'a', now: T0, status: null, message: null, metadata: null, progress: null });
    expect(heartbeat.some((op) => op.opcode === 'IdxInsert')).toBe(true);
    // 0005 rebuilt the table with that CHECK as an OR chain: no temporary b-tree at all now.
    expect(heartbeat.filter((op) => op.opcode === 'OpenEphemeral')).toEqual([]);
    await s.close();
  });

  it('upgrades a version 4 database in place: every row, event, command and monitor row kept; what breaks the rules repaired', async () => {
    const path = tempDb();
    const old = databaseAtVersion(path, 4);
    for (const name of ['beating', 'silent', 'gone', 'seconds', 'half', 'odd']) register(old, name, T0);
    beat(old, 'beating', T0 + 10_000);
    beat(old, 'gone', T0 + 2_000);
    old.prepare(GOODBYE_SQL).run({ name: 'gone', now: T0 + 3_000, message: 'bye' });
    old.prepare(SEND_SQL).run({ name: 'beating', payload: 'x', now: T0 + 5_000, deadline_at: T0 + 60_000 });
    old.prepare(SEND_SQL).run({ name: 'silent', payload: 'y', now: T0 + 5_000, deadline_at: null });
    // What version 4 let a foreign writer store: a heartbeat in seconds, a pid without its identity, a text
    // progress and a fractional interval.
    old.prepare(HEARTBEAT_SQL).run({ name: 'seconds', now: Math.floor((T0 + 7_000) / 1000), status: null, message: null, metadata: null, progress: null });
    old.prepare("UPDATE agents SET pid = 4242, pid_start_time = NULL, host = NULL WHERE name = 'half'").run();
    old.prepare("UPDATE agents SET progress = 'abc', interval_ms = 1500.5 WHERE name = 'odd'").run();
    // The health loop's rows that point at agents.
    old.exec(`INSERT INTO monitor_state (id, pass_seq, last_pass_at, every_ms) VALUES (1, 7, ${T0 + 9_000}, 60000)`);
    old.exec(`INSERT INTO alert_cooldowns (agent_id, last_alert_at, down_state, down_since) SELECT id, ${T0 + 3_000}, 'offline', ${T0 + 3_000} FROM agents WHERE name = 'gone'`);
    old.exec(`INSERT INTO alerts (agent_id, agent_name, kind, state, event_id, created_at, payload) SELECT id, name, 'alert', 'offline', NULL, ${T0 + 3_000}, '{}' FROM agents WHERE name = 'gone'`);
    const counts = (db: Database.Database) => Object.fromEntries(['agents', 'events', 'commands', 'alert_cooldowns', 'alerts', 'monitor_state'].map((t) => [t, db.prepare(`SELECT count(*) FROM ${t}`).pluck().get()]));
    const rows = (db: Database.Database, names: string[]) => db.prepare(`SELECT * FROM agents WHERE name IN (${names.map(() => '?').join(',')}) ORDER BY id`).all(...names);
    const good = ['beating', 'silent', 'gone'];
    const before = {
      counts: counts(old),
      good: rows(old, good),
      events: old.prepare("SELECT * FROM events WHERE agent_name <> 'seconds' ORDER BY id").all(),
      commands: old.prepare('SELECT * FROM commands ORDER BY id').all(),
      alerts: old.prepare('SELECT * FROM alerts ORDER BY id').all(),
    };
    old.close();

    const s = await openStore({ path });
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(counts(s.db)).toEqual(before.counts);
    expect(rows(s.db, good)).toEqual(before.good);
    expect(s.db.prepare("SELECT * FROM events WHERE agent_name <> 'seconds' ORDER BY id").all()).toEqual(before.events);
    // The events the heartbeat in seconds made (dated 1970) are kept, their times in milliseconds now.
    const at = s.db.prepare("SELECT at FROM events WHERE agent_name = 'seconds' ORDER BY id").pluck().all() as number[];
    expect(at.length).toBeGreaterThan(1);
    for (const t of at) expect(t).toBeGreaterThanOrEqual(978_307_200_000);
    expect(s.db.prepare('SELECT * FROM commands ORDER BY id').all()).toEqual(before.commands);
    // Version 7 adds alerts.outage_id, NULL for every alert about an agent.
    expect(s.db.prepare('SELECT * FROM alerts ORDER BY id').all()).toEqual(before.alerts.map((r) => ({ ...(r as object), outage_id: null })));
    const get = (name: string) => s.db.prepare('SELECT * FROM agents WHERE name = ?').get(name) as Record<string, unknown>;
    expect(get('seconds').last_heartbeat_at).toBe(Math.floor((T0 + 7_000) / 1000) * 1000);
    expect(get('half')).toMatchObject({ pid: null, pid_start_time: null });
    expect(get('odd')).toMatchObject({ progress: null, interval_ms: 1501 });
    expect(s.db.pragma('quick_check', { simple: true })).toBe('ok');
    expect(s.db.pragma('foreign_key_check')).toEqual([]);
    expect(s.db.pragma('foreign_keys', { simple: true })).toBe(1);
    // The foreign keys still cascade, the triggers still fire, the loop still reads what is due through its index.
    const plan = s.db.prepare('EXPLAIN QUERY PLAN SELECT * FROM agents WHERE check_at <= ?').all(T0) as { detail: string }[];
    expect(plan.map((p) => p.detail).join('\n')).toMatch(/USING INDEX agents_check/);
    await s.heartbeat({ name: 'silent' }, T0 + 20_000);
    expect(s.db.prepare("SELECT reason FROM events WHERE agent_name = 'silent' ORDER BY id DESC LIMIT 1").pluck().get()).toBe('first heartbeat');
    s.db.prepare("DELETE FROM agents WHERE name = 'gone'").run();
    expect(counts(s.db)).toMatchObject({ alert_cooldowns: 0, events: (before.counts.events as number) + 1 - 3 });
    expect(s.db.prepare("SELECT agent_id FROM alerts").pluck().get()).toBeNull();
    await s.close();
  });
});

describe('version 7 (0007_hosts)', () => {
  it('upgrades a version 6 database in place: every row kept, alerts gain a NULL outage_id, one open outage per host', async () => {
    const path = tempDb();
    const old = databaseAtVersion(path, 6);
    register(old, 'kept', T0);
    old.exec(`INSERT INTO monitor_state (id, pass_seq, last_pass_at, every_ms) VALUES (1, 3, ${T0}, 1000)`);
    old.exec(`INSERT INTO alerts (agent_id, agent_name, kind, state, event_id, created_at, payload) SELECT id, name, 'alert', 'offline', NULL, ${T0}, '{}' FROM agents`);
    const agents = old.prepare('SELECT * FROM agents').all();
    old.close();

    const s = await openStore({ path });
    expect(s.db.pragma('user_version', { simple: true })).toBe(7);
    expect(SCHEMA_VERSION).toBe(7);
    expect(s.db.prepare('SELECT * FROM agents').all()).toEqual(agents);
    expect(s.db.prepare('SELECT pass_seq FROM monitor_state').pluck().get()).toBe(3);
    expect(s.db.prepare('SELECT agent_name, outage_id FROM alerts').all()).toEqual([{ agent_name: 'kept', outage_id: null }]);
    expect(s.db.prepare('SELECT count(*) FROM health_loops').pluck().get()).toBe(0);
    const open = s.db.prepare(`INSERT INTO host_outages (host, detected_at, silent_since, agents, agent_names) VALUES ('h', ?, ?, 2, '[]')
      ON CONFLICT (host) WHERE ended_at IS NULL DO NOTHING RETURNING id`);
    expect(open.all(T0, T0)).toHaveLength(1);
    expect(open.all(T0 + 1, T0)).toEqual([]);
    s.db.prepare('UPDATE host_outages SET ended_at = ?').run(T0 + 2);
    expect(open.all(T0 + 3, T0)).toHaveLength(1);
    expect(s.db.pragma('foreign_key_check')).toEqual([]);
    await s.close();
  });
});

describe('the database refuses what breaks it, for every writer (plain SQL, as a foreign writer runs it)', () => {
  const fresh = async () => {
    const s = await openStore({ path: tempDb() });
    register(s.db, 'a', T0);
    return s;
  };

  it('times that are not milliseconds since the epoch', async () => {
    const s = await fresh();
    const hb = (now: unknown) => s.db.prepare(HEARTBEAT_SQL).run({ name: 'a', now, status: null, message: null, metadata: null, progress: null });
    expect(() => hb(Math.floor(T0 / 1000))).toThrow(/CHECK constraint failed/); // seconds
    expect(() => hb(T0 + 0.5)).toThrow(/CHECK constraint failed/); // a fraction of a millisecond
    expect(() => hb(-1)).toThrow(/CHECK constraint failed/);
    expect(() => hb(T0 * 1000)).toThrow(/CHECK constraint failed/); // microseconds
    expect(() => hb('soon')).toThrow(/CHECK constraint failed/);
    expect(() => register(s.db, 'b', 1_700_000_000)).toThrow(/CHECK constraint failed/);
    expect(() => s.db.prepare(SEND_SQL).run({ name: 'a', payload: 'p', now: T0, deadline_at: 60 })).toThrow(/CHECK constraint failed/);
    hb(T0 + 1_000);
    hb(String(T0 + 2_000)); // text that is an integer is stored as one (the column's affinity)
    expect((await s.getAgent('a'))!.lastHeartbeatAt).toBe(T0 + 2_000);
    await s.close();
  });

  it('non-integer progress and intervals', async () => {
    const s = await fresh();
    const hb = (progress: unknown) => s.db.prepare(HEARTBEAT_SQL).run({ name: 'a', now: T0 + 1, status: null, message: null, metadata: null, progress });
    expect(() => hb('abc')).toThrow(/CHECK constraint failed/);
    expect(() => hb(1.5)).toThrow(/CHECK constraint failed/);
    hb(2);
    expect(() => register(s.db, 'a', T0 + 2, { interval_ms: 1500.5 })).toThrow(/CHECK constraint failed/);
    expect(() => register(s.db, 'a', T0 + 2, { offline_after_ms: '5m' })).toThrow(/CHECK constraint failed/);
    expect(await s.getAgent('a')).toMatchObject({ progress: 2, intervalMs: 30_000 });
    await s.close();
  });

  it('half a process identity: a pid needs its start time, host and boot id', async () => {
    const s = await fresh();
    const identity = { pid: 4242, pid_start_time: 123, host: 'h1', boot_id: 'b1' };
    for (const missing of ['pid_start_time', 'host', 'boot_id']) {
      expect(() => register(s.db, `n-${missing}`, T0, { ...identity, [missing]: null })).toThrow(/CHECK constraint failed/);
    }
    register(s.db, 'whole', T0, identity);
    register(s.db, 'none', T0);
    expect(await s.getAgent('whole')).toMatchObject({ pid: 4242, host: 'h1' });
    await s.close();
  });

  it('a new incarnation always writes one event, also while the agent is still initializing (a crash loop before the first beat)', async () => {
    const s = await fresh();
    const start = (now: number) => s.db.prepare(START_SQL).run({ name: 'a', restarted: 1, pid: null, pid_start_time: null, host: null, boot_id: null, reason: 'restarted', evidence: null, now });
    start(T0 + 1_000);
    start(T0 + 2_000);
    register(s.db, 'a', T0 + 3_000, { pid: 777, pid_start_time: 1, host: 'h', boot_id: 'b' }); // a new process
    register(s.db, 'a', T0 + 4_000, { pid: 777, pid_start_time: 1, host: 'h', boot_id: 'b' }); // the same: no new one
    const a = (await s.getAgent('a'))!;
    expect({ incarnation: a.incarnation, restarts: a.restartCount, state: a.state }).toEqual({ incarnation: 4, restarts: 2, state: 'initializing' });
    const events = s.db.prepare("SELECT at, from_state, to_state, reason, json_extract(evidence, '$.incarnation') AS inc FROM events WHERE agent_name = 'a' ORDER BY id").all();
    expect(events).toEqual([
      { at: T0, from_state: null, to_state: 'initializing', reason: 'registered', inc: null },
      { at: T0 + 1_000, from_state: 'initializing', to_state: 'initializing', reason: 'restarted', inc: 2 },
      { at: T0 + 2_000, from_state: 'initializing', to_state: 'initializing', reason: 'restarted', inc: 3 },
      { at: T0 + 3_000, from_state: 'initializing', to_state: 'initializing', reason: 'registered by a new process', inc: 4 },
    ]);
    // From another state the state trigger writes it, once.
    beat(s.db, 'a', T0 + 5_000);
    start(T0 + 6_000);
    expect(s.db.prepare("SELECT count(*) FROM events WHERE agent_name = 'a' AND at = ?").pluck().get(T0 + 6_000)).toBe(1);
    await s.close();
  });
});
