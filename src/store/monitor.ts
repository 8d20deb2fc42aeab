/**
 * The health loop's tables (migration 0003_monitor): its own pass record, counters, held convictions, and the
 * guarded state writes a pass makes. SQL lives here; callers pass `now` and get camelCase records back.
 */
import type Database from 'better-sqlite3';
import type { Store } from './store.js';
import { isSame } from './dialect.js';
import { type AgentRecord, type AgentState, type EventRecord, toAgentRecord, toEventRecord } from './rows.js';

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
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    passSeq: Number(r.pass_seq),
    lastPassAt: n(r.last_pass_at),
    lastPassMs: n(r.last_pass_ms),
    everyMs: n(r.every_ms),
    monitorPid: n(r.monitor_pid),
    monitorHost: r.monitor_host === null ? null : String(r.monitor_host),
    eventCursor: n(r.event_cursor),
  };
}

/** Starts a pass: raises the pass number and returns it with the record as it was (call inside store.tx()). */
export async function beginPass(store: Store): Promise<{ passSeq: number; before: MonitorRecord | null }> {
  const before = await readMonitor(store);
  await store.sql.run('INSERT INTO monitor_state (id, pass_seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET pass_seq = monitor_state.pass_seq + 1');
  return { passSeq: (before?.passSeq ?? 0) + 1, before };
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
  for (const [name, d] of Object.entries(deltas)) if (d) await store.sql.run(sql, { name, d });
}

export async function readCounters(store: Store): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const r of await store.sql.all<{ name: string; value: number }>('SELECT name, value FROM monitor_counters ORDER BY name')) out[r.name] = Number(r.value);
  return out;
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
  for (const h of held) await store.sql.run('INSERT INTO monitor_held (agent_id, to_state, held_at, pass_seq) VALUES (:id, :to, :now, :pass)', { id: h.agentId, to: h.to, now, pass: passSeq });
}

export async function agentById(store: Store, id: number): Promise<AgentRecord | undefined> {
  const r = await store.sql.get('SELECT * FROM agents WHERE id = ?', [id]);
  return r ? toAgentRecord(r) : undefined;
}
