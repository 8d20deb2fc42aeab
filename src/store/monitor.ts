/**
 * The health loop's tables (migration 0003_monitor): its own pass record, counters, held convictions, and the
 * guarded state writes a pass makes. SQL lives here; callers pass `now` and get camelCase records back.
 */
import type Database from 'better-sqlite3';
import type { Store } from './store.js';
import { type AgentRecord, type AgentState, type EventRecord, toAgentRecord, toEventRecord } from './rows.js';

const rows = (list: unknown[]): AgentRecord[] => (list as Record<string, unknown>[]).map(toAgentRecord);

/**
 * The agents a pass must look at, each read through an index so a pass costs what is due, not what is registered:
 * live agents past their stale deadline, maintenance windows that have ended, and agents whose process runs on
 * `host` (crash proofs). Offline and failed agents are never read. An agent may appear in more than one list.
 */
export function dueAgents(store: Store, now: number, host: string | null): AgentRecord[] {
  // The WHERE terms repeat the partial indexes' own terms word for word: that is how SQLite knows it may use them.
  // check_at (0003, recomputed by 0004) is the earlier of the stale and offline deadlines, NULL for offline, failed and maintenance.
  const due = store.prepared("SELECT * FROM agents WHERE check_at <= :now").all({ now });
  const maintenance = store.prepared("SELECT * FROM agents WHERE maintenance_until <= :now AND state = 'maintenance'").all({ now });
  const local = host === null ? [] : store.prepared("SELECT * FROM agents WHERE host = :host AND pid IS NOT NULL AND state NOT IN ('offline', 'failed', 'maintenance')").all({ host });
  return [...rows(due), ...rows(maintenance), ...rows(local)];
}

/** Agents the health loop watches: registered, and neither offline, failed nor in maintenance (for the mass-conviction rule). */
export function countWatched(store: Store): number {
  return (store.prepared("SELECT count(*) AS n FROM agents WHERE deregistered_at IS NULL AND state NOT IN ('offline', 'failed', 'maintenance')").get() as { n: number }).n;
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
 * guard compares state, heartbeat count, incarnation and pid. Call inside store.immediate(). The state trigger writes
 * the event and, for offline, cancels the agent's executing commands. Returns whether it was written.
 */
export function writeGuardedTransition(store: Store, t: GuardedTransition, now: number): boolean {
  const a = t.agent;
  return (
    store.prepared(`UPDATE agents SET state = :to, state_since = :since, state_reason = :reason, state_evidence = :evidence,
         maintenance_until = CASE WHEN :to = 'maintenance' THEN maintenance_until ELSE NULL END, updated_at = :now
       WHERE id = :id AND state = :state AND heartbeat_seq = :seq AND incarnation = :incarnation AND pid IS :pid
         AND maintenance_until IS :until AND deregistered_at IS NULL`,
    ).run({
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
    }).changes === 1
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

export function readMonitor(store: Store): MonitorRecord | null {
  return monitorRecord(store.prepared(READ_MONITOR).get());
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

/** Starts a pass: raises the pass number and returns it with the record as it was (call inside store.immediate()). */
export function beginPass(store: Store): { passSeq: number; before: MonitorRecord | null } {
  const before = readMonitor(store);
  store.prepared('INSERT INTO monitor_state (id, pass_seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET pass_seq = pass_seq + 1').run();
  return { passSeq: (before?.passSeq ?? 0) + 1, before };
}

/** Records a completed pass: the loop's own heartbeat, which `status` and `check` read. */
export function recordPass(store: Store, p: { at: number; durationMs: number; everyMs: number | null; pid: number; host: string | null }): void {
  store.prepared('UPDATE monitor_state SET last_pass_at = :at, last_pass_ms = :ms, every_ms = :every, monitor_pid = :pid, monitor_host = :host WHERE id = 1').run({
    at: p.at,
    ms: p.durationMs,
    every: p.everyMs,
    pid: p.pid,
    host: p.host,
  });
}

export function setEventCursor(store: Store, id: number): void {
  store.prepared('INSERT INTO monitor_state (id, event_cursor) VALUES (1, :id) ON CONFLICT (id) DO UPDATE SET event_cursor = :id').run({ id });
}

/** Events after `afterId`, oldest first, at most `limit`. */
export function eventsAfter(store: Store, afterId: number, limit: number): EventRecord[] {
  return (store.prepared('SELECT * FROM events WHERE id > :after ORDER BY id LIMIT :limit').all({ after: afterId, limit }) as Record<string, unknown>[]).map(toEventRecord);
}

/** Adds to named counters (created at 0 on first use). */
export function bumpCounters(store: Store, deltas: Record<string, number>): void {
  const s = store.prepared('INSERT INTO monitor_counters (name, value) VALUES (:name, :d) ON CONFLICT (name) DO UPDATE SET value = value + :d');
  for (const [name, d] of Object.entries(deltas)) if (d) s.run({ name, d });
}

export function readCounters(store: Store): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of store.prepared('SELECT name, value FROM monitor_counters ORDER BY name').all() as { name: string; value: number }[]) out[r.name] = Number(r.value);
  return out;
}

/** The convictions held back by the previous pass: agent id → the state it was to enter. */
export function readHeld(store: Store): Map<number, AgentState> {
  const m = new Map<number, AgentState>();
  for (const r of store.prepared('SELECT agent_id, to_state FROM monitor_held').all() as { agent_id: number; to_state: AgentState }[]) m.set(Number(r.agent_id), r.to_state);
  return m;
}

/** Replaces the held convictions with `held` (call inside store.immediate()). */
export function replaceHeld(store: Store, held: { agentId: number; to: AgentState }[], now: number, passSeq: number): void {
  store.prepared('DELETE FROM monitor_held').run();
  const ins = store.prepared('INSERT INTO monitor_held (agent_id, to_state, held_at, pass_seq) VALUES (:id, :to, :now, :pass)');
  for (const h of held) ins.run({ id: h.agentId, to: h.to, now, pass: passSeq });
}

export function agentById(store: Store, id: number): AgentRecord | undefined {
  const r = store.prepared('SELECT * FROM agents WHERE id = ?').get(id) as Record<string, unknown> | undefined;
  return r ? toAgentRecord(r) : undefined;
}
