/**
 * The health loop's tables (migration 0003_monitor): its own pass record, counters, held convictions, and the
 * guarded state writes a pass makes. SQL lives here; callers pass `now` and get camelCase records back.
 */
import type Database from 'better-sqlite3';
import type { Store } from './store.js';
import { isSame, jsonArrayValues } from './dialect.js';
import { type AgentRecord, type AgentState, type EventRecord, numOrNull, toAgentRecord, toEventRecord } from './rows.js';

const rows = (list: unknown[]): AgentRecord[] => (list as Record<string, unknown>[]).map(toAgentRecord);

/**
 * The agents a pass must look at, each read through an index so a pass costs what is due, not what is registered:
 * live agents past their stale deadline, maintenance windows that have ended, and agents whose process runs on
 * `host` (crash proofs). Offline and failed agents are never read. An agent may appear in more than one list.
 */
export async function dueAgents(store: Store, now: number, host: string | null): Promise<AgentRecord[]> {
  // The WHERE terms repeat the partial indexes' own terms word for word: that is how SQLite knows it may use them.
  // check_at (0003, recomputed by 0004) is the earlier of the stale and offline deadlines, NULL for offline, failed and maintenance.
  const due = await store.sql.all("SELECT * FROM agents WHERE check_at <= :now", { now });
  const maintenance = await store.sql.all("SELECT * FROM agents WHERE maintenance_until <= :now AND state = 'maintenance'", { now });
  const local = host === null ? [] : await store.sql.all("SELECT * FROM agents WHERE host = :host AND pid IS NOT NULL AND state NOT IN ('offline', 'failed', 'maintenance')", { host });
  return [...rows(due), ...rows(maintenance), ...rows(local)];
}

/** Agents the health loop watches: registered, and neither offline, failed nor in maintenance (for the mass-conviction rule). */
export async function countWatched(store: Store): Promise<number> {
  return Number((await store.sql.get<{ n: number }>("SELECT count(*) AS n FROM agents WHERE deregistered_at IS NULL AND state NOT IN ('offline', 'failed', 'maintenance')"))!.n);
}

/** One state change a pass decided, written only if the agent is still exactly as the pass saw it. */
export interface GuardedTransition {
  agent: AgentRecord;
  to: AgentState;
  since: number;
  reason: string;
  evidence: Record<string, unknown>;
}

/**
 * Writes a transition unless the agent changed since it was read (a heartbeat, a new process, an operator): the
 * guard compares state, heartbeat count, incarnation and pid. Call inside store.tx(). The state trigger writes
 * the event and, for offline, cancels the agent's executing commands. Returns whether it was written.
 */
export async function writeGuardedTransition(store: Store, t: GuardedTransition, now: number): Promise<boolean> {
  const a = t.agent;
  const d = store.sql.dialect;
  return (
    (await store.sql.run(
      `UPDATE agents SET state = :to, state_since = :since, state_reason = :reason, state_evidence = :evidence,
         maintenance_until = CASE WHEN :to = 'maintenance' THEN maintenance_until ELSE NULL END, updated_at = :now
       WHERE id = :id AND state = :state AND heartbeat_seq = :seq AND incarnation = :incarnation AND ${isSame(d, 'pid', ':pid')}
         AND ${isSame(d, 'maintenance_until', ':until')} AND deregistered_at IS NULL`,
      {
      id: a.id,
      to: t.to,
      since: t.since,
      reason: t.reason,
      evidence: JSON.stringify(t.evidence),
      now,
      state: a.state,
      seq: a.heartbeatSeq,
      incarnation: a.incarnation,
      pid: a.pid,
      until: a.maintenanceUntil,
    })).changes === 1
  );
}

/** The health loop's own record (one row), or null before the first pass. */
export interface MonitorRecord {
  passSeq: number;
  lastPassAt: number | null;
  lastPassMs: number | null;
  everyMs: number | null;
  monitorPid: number | null;
  monitorHost: string | null;
  eventCursor: number | null;
}

export async function readMonitor(store: Store): Promise<MonitorRecord | null> {
  return monitorRecord(await store.sql.get(READ_MONITOR));
}

const READ_MONITOR = 'SELECT * FROM monitor_state WHERE id = 1';

/** The same from any connection (db-check reads through a read-only one). */
export function readMonitorFrom(db: Database.Database): MonitorRecord | null {
  return monitorRecord(db.prepare(READ_MONITOR).get());
}

function monitorRecord(row: unknown): MonitorRecord | null {
  const r = row as Record<string, number | string | null> | undefined;
  if (!r) return null;
  return {
    passSeq: Number(r.pass_seq),
    lastPassAt: numOrNull(r.last_pass_at),
    lastPassMs: numOrNull(r.last_pass_ms),
    everyMs: numOrNull(r.every_ms),
    monitorPid: numOrNull(r.monitor_pid),
    monitorHost: r.monitor_host === null ? null : String(r.monitor_host),
    eventCursor: numOrNull(r.event_cursor),
  };
}

/** Starts a pass: raises the pass number and returns it with the record as it was (call inside store.tx()). */
export async function beginPass(store: Store): Promise<{ passSeq: number; before: MonitorRecord | null }> {
  const before = await readMonitor(store);
  // RETURNING: with several monitors (PostgreSQL), another pass may have raised it since `before` was read.
  const row = await store.sql.get<{ pass_seq: number }>('INSERT INTO monitor_state (id, pass_seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET pass_seq = monitor_state.pass_seq + 1 RETURNING pass_seq');
  return { passSeq: Number(row!.pass_seq), before };
}

/** Records a completed pass: the loop's own heartbeat, which `status` and `check` read. */
export async function recordPass(store: Store, p: { at: number; durationMs: number; everyMs: number | null; pid: number; host: string | null }): Promise<void> {
  await store.sql.run('UPDATE monitor_state SET last_pass_at = :at, last_pass_ms = :ms, every_ms = :every, monitor_pid = :pid, monitor_host = :host WHERE id = 1', {
    at: p.at,
    ms: p.durationMs,
    every: p.everyMs,
    pid: p.pid,
    host: p.host,
  });
}

export async function setEventCursor(store: Store, id: number): Promise<void> {
  await store.sql.run('INSERT INTO monitor_state (id, event_cursor) VALUES (1, :id) ON CONFLICT (id) DO UPDATE SET event_cursor = :id', { id });
}

/** Events after `afterId`, oldest first, at most `limit`. */
export async function eventsAfter(store: Store, afterId: number, limit: number): Promise<EventRecord[]> {
  return (await store.sql.all('SELECT * FROM events WHERE id > :after ORDER BY id LIMIT :limit', { after: afterId, limit })).map(toEventRecord);
}

/** Adds to named counters (created at 0 on first use). */
export async function bumpCounters(store: Store, deltas: Record<string, number>): Promise<void> {
  const sql = 'INSERT INTO monitor_counters (name, value) VALUES (:name, :d) ON CONFLICT (name) DO UPDATE SET value = monitor_counters.value + :d';
  // In name order: two monitors bumping the same counters at once then lock their rows in one order.
  for (const [name, d] of Object.entries(deltas).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) if (d) await store.sql.run(sql, { name, d });
}

export async function readCounters(store: Store): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const r of await store.sql.all<{ name: string; value: number }>('SELECT name, value FROM monitor_counters ORDER BY name')) out[r.name] = Number(r.value);
  return out;
}

/** Whether the previous pass held back any conviction (a read, so that a pass with nothing due writes nothing). */
export async function anyHeld(store: Store): Promise<boolean> {
  return (await store.sql.get('SELECT 1 AS one FROM monitor_held LIMIT 1')) !== undefined;
}

/** The convictions held back by the previous pass: agent id → the state it was to enter. */
export async function readHeld(store: Store): Promise<Map<number, AgentState>> {
  const m = new Map<number, AgentState>();
  for (const r of await store.sql.all<{ agent_id: number; to_state: AgentState }>('SELECT agent_id, to_state FROM monitor_held')) m.set(Number(r.agent_id), r.to_state);
  return m;
}

/** Replaces the held convictions with `held` (call inside store.tx()). */
export async function replaceHeld(store: Store, held: { agentId: number; to: AgentState }[], now: number, passSeq: number): Promise<void> {
  await store.sql.run('DELETE FROM monitor_held');
  // ON CONFLICT: on PostgreSQL another monitor's pass may have inserted a row since this DELETE's snapshot.
  for (const h of held) {
    await store.sql.run(
      'INSERT INTO monitor_held (agent_id, to_state, held_at, pass_seq) VALUES (:id, :to, :now, :pass) ON CONFLICT (agent_id) DO UPDATE SET to_state = :to, held_at = :now, pass_seq = :pass',
      { id: h.agentId, to: h.to, now, pass: passSeq },
    );
  }
}

export async function agentById(store: Store, id: number): Promise<AgentRecord | undefined> {
  const r = await store.sql.get('SELECT * FROM agents WHERE id = ?', [id]);
  return r ? toAgentRecord(r) : undefined;
}

/** One health-loop process, as health_loops (0007_hosts) names it: '' and 0 where a part is unknown. */
export interface LoopIdentity {
  host: string;
  bootId: string;
  pid: number;
  pidStartTime: number;
}

/** A health loop seen on this database: its own row of health_loops. */
export interface HealthLoopRecord extends LoopIdentity {
  startedAt: number;
  everyMs: number | null;
  passes: number;
  lastPassAt: number | null;
  lastPassMs: number | null;
  lastPassSeq: number | null;
  suspect: string | null;
  clockSkewMs: number | null;
  version: string | null;
  stoppedAt: number | null;
}

/** Health-loop rows whose last pass is older than this are deleted by any pass. */
export const LOOP_ROW_KEEP_MS = 7 * 24 * 3600_000;

/** Records one completed pass of loop `id` (its row created by its first pass). Call inside store.tx(). */
export async function recordLoopPass(
  store: Store,
  id: LoopIdentity,
  p: { at: number; durationMs: number; everyMs: number | null; passSeq: number; suspect: string | null; clockSkewMs: number | null; version: string },
): Promise<void> {
  await store.sql.run(
    `INSERT INTO health_loops (host, boot_id, pid, pid_start_time, started_at, every_ms, passes, last_pass_at, last_pass_ms, last_pass_seq, suspect, clock_skew_ms, version, stopped_at)
     VALUES (:host, :boot, :pid, :start, :at, :every, 1, :at, :ms, :seq, :suspect, :skew, :version, NULL)
     ON CONFLICT (host, boot_id, pid, pid_start_time) DO UPDATE SET every_ms = :every, passes = health_loops.passes + 1, last_pass_at = :at,
       last_pass_ms = :ms, last_pass_seq = :seq, suspect = :suspect, clock_skew_ms = :skew, version = :version, stopped_at = NULL`,
    { host: id.host, boot: id.bootId, pid: id.pid, start: id.pidStartTime, at: p.at, every: p.everyMs, ms: p.durationMs, seq: p.passSeq, suspect: p.suspect, skew: p.clockSkewMs, version: p.version },
  );
}

/** Marks loop `id` as stopped cleanly (its row stays, so `status` can say where loops ran). */
export async function recordLoopStopped(store: Store, id: LoopIdentity, at: number): Promise<void> {
  await store.sql.run('UPDATE health_loops SET stopped_at = :at WHERE host = :host AND boot_id = :boot AND pid = :pid AND pid_start_time = :start', {
    at,
    host: id.host,
    boot: id.bootId,
    pid: id.pid,
    start: id.pidStartTime,
  });
}

function loopRecord(r: Record<string, unknown>): HealthLoopRecord {
  return {
    host: String(r.host),
    bootId: String(r.boot_id),
    pid: Number(r.pid),
    pidStartTime: Number(r.pid_start_time),
    startedAt: Number(r.started_at),
    everyMs: numOrNull(r.every_ms),
    passes: Number(r.passes),
    lastPassAt: numOrNull(r.last_pass_at),
    lastPassMs: numOrNull(r.last_pass_ms),
    lastPassSeq: numOrNull(r.last_pass_seq),
    suspect: r.suspect == null ? null : String(r.suspect),
    clockSkewMs: numOrNull(r.clock_skew_ms),
    version: r.version == null ? null : String(r.version),
    stoppedAt: numOrNull(r.stopped_at),
  };
}

const READ_LOOPS = 'SELECT * FROM health_loops ORDER BY last_pass_at DESC, host, pid';

/**
 * The health loops seen on this database, the latest pass first; [] on a database older than version 7 (readers
 * read versions 4 and later as they are).
 */
export async function readLoops(store: Store): Promise<HealthLoopRecord[]> {
  const has = store.sql.dialect === 'postgres'
    ? await store.sql.get<{ ok: boolean }>("SELECT to_regclass('health_loops') IS NOT NULL AS ok")
    : await store.sql.get<{ ok: number }>("SELECT count(*) AS ok FROM sqlite_schema WHERE type = 'table' AND name = 'health_loops'");
  if (!has?.ok) return [];
  return (await store.sql.all(READ_LOOPS)).map(loopRecord);
}

/** The same from any connection (db-check reads through a read-only one); [] on a database older than version 7. */
export function readLoopsFrom(db: Database.Database): HealthLoopRecord[] {
  const has = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'health_loops'").get();
  return has ? (db.prepare(READ_LOOPS).all() as Record<string, unknown>[]).map(loopRecord) : [];
}

/**
 * Deletes the health-loop rows that can no longer pass: on this host (same name), those from another boot and those
 * whose process is proven gone (`startTime` says no such pid, or another process now has it); anywhere, those whose
 * last pass is older than LOOP_ROW_KEEP_MS. Never `self`. Returns how many were deleted.
 */
export async function pruneLoops(store: Store, self: LoopIdentity, startTime: (pid: number) => number | null, now: number): Promise<number> {
  let deleted = (await store.sql.run('DELETE FROM health_loops WHERE COALESCE(last_pass_at, started_at) < :cut', { cut: now - LOOP_ROW_KEEP_MS })).changes;
  const mine = (await store.sql.all('SELECT * FROM health_loops WHERE host = :host', { host: self.host })).map(loopRecord);
  for (const l of mine) {
    if (l.bootId === self.bootId && l.pid === self.pid && l.pidStartTime === self.pidStartTime) continue;
    let gone = l.bootId !== self.bootId;
    if (!gone) {
      const start = startTime(l.pid);
      gone = start === null || (l.pidStartTime !== 0 && start !== l.pidStartTime);
    }
    if (!gone) continue;
    deleted += (await store.sql.run('DELETE FROM health_loops WHERE host = :host AND boot_id = :boot AND pid = :pid AND pid_start_time = :start', {
      host: l.host,
      boot: l.bootId,
      pid: l.pid,
      start: l.pidStartTime,
    })).changes;
  }
  return deleted;
}

/**
 * Takes the alert cursor for this pass: on PostgreSQL the monitor_state row is locked with FOR UPDATE SKIP LOCKED,
 * so that of several monitors passing at once only one turns the new events into alerts; the others get null and
 * skip alert queueing (the next pass catches up from the cursor). On SQLite the pass's transaction already holds the
 * write lock (BEGIN IMMEDIATE), so the cursor is simply read. Call inside store.tx().
 */
export async function takeEventCursor(store: Store): Promise<{ cursor: number } | null> {
  const pg = store.sql.dialect === 'postgres';
  const row = await store.sql.get<{ event_cursor: number | null }>(`SELECT event_cursor FROM monitor_state WHERE id = 1${pg ? ' FOR UPDATE SKIP LOCKED' : ''}`);
  if (!row) {
    if (pg && (await store.sql.get('SELECT 1 AS one FROM monitor_state WHERE id = 1'))) return null; // another monitor holds it
    return { cursor: 0 };
  }
  return { cursor: Number(row.event_cursor ?? 0) };
}

/**
 * Locks the agents a pass is about to write, in id order, skipping those another transaction holds (a heartbeat
 * being written: that agent is alive, and the next pass judges it again). The deadlock rule on PostgreSQL: a
 * transaction that writes several agents' transitions (each writes an event) must hold their rows before the
 * first write. Returns the ids locked; on SQLite (one writer at a time) all of them.
 */
export async function lockAgents(store: Store, ids: readonly number[]): Promise<Set<number>> {
  if (store.sql.dialect !== 'postgres' || !ids.length) return new Set(ids);
  const rows = await store.sql.all<{ id: number }>(`SELECT id FROM agents WHERE id IN (${jsonArrayValues(store.sql.dialect, '?')}) ORDER BY id FOR UPDATE SKIP LOCKED`, [JSON.stringify([...new Set(ids)])]);
  return new Set(rows.map((r) => Number(r.id)));
}
