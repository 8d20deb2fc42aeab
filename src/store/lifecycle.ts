import { AgentNotFoundError } from '../errors.js';
import { protocol } from './dialect.js';
import { jsonField } from './dialect.js';
import type { AgentRecord, RestartPolicy } from './rows.js';
import { type RegisterParams, type Store, registerBindings, wholeIdentity } from './store.js';

/** An agent process's life in the database: starting an incarnation, exiting, failing, and who supervises it. */

export interface StartRowParams {
  register: RegisterParams;
  /** Force a new incarnation with this reason (a wrapper's restart); otherwise one starts when the process is new or the same one starts again. */
  reason?: string;
  evidence?: Record<string, unknown>;
  /** Count this start as a restart (restart_count + 1). */
  restarted?: boolean;
  supervision?: { pid: number; startTime: number | null; policy: RestartPolicy; maxRestarts: number } | null;
}

/**
 * Registers an agent process and makes sure its start is a new incarnation, in one transaction. The register
 * statement starts one when the pid is new; when it is not (the same process starting again) or a reason is
 * given, the start statement runs first, so there is exactly one incarnation and one event per start.
 */
export function startAgentRow(store: Store, p: StartRowParams, now: number): Promise<AgentRecord> {
  return store.tx(async (s) => {
    const r = p.register;
    const before = await s.getAgent(r.name);
    const samePid = before !== undefined && r.pid != null && before.pid === r.pid && before.pidStartTime === (r.pidStartTime ?? null);
    // A process that cannot be named whole (it exited before its start time was read) is recorded without a pid;
    // it is still a new start, so the start statement makes its incarnation (the register statement would not).
    const whole = wholeIdentity(r);
    if (before && (p.reason !== undefined || samePid || !whole)) {
      await s.sql.run(protocol(s.sql.dialect).start, {
        name: r.name,
        restarted: p.restarted ? 1 : 0,
        pid: whole ? (r.pid ?? null) : null,
        pid_start_time: whole && r.pid != null ? (r.pidStartTime ?? null) : null,
        host: r.host ?? null,
        boot_id: r.bootId ?? null,
        reason: p.reason ?? 'started',
        evidence: p.evidence ? JSON.stringify(p.evidence) : null,
        now,
      });
    }
    await s.sql.run(s.registerSql, registerBindings(r, now));
    if (p.supervision !== undefined) {
      const v = p.supervision;
      await s.sql.run(
        `UPDATE agents SET supervisor_pid = :pid, supervisor_start_time = :start, restart_policy = COALESCE(:policy, restart_policy),
                     max_restarts = COALESCE(:max, max_restarts) WHERE name = :name`,
        { name: r.name, pid: v?.pid ?? null, start: v?.startTime ?? null, policy: v?.policy ?? null, max: v?.maxRestarts ?? null },
      );
    }
    return (await s.getAgent(r.name))!;
  });
}

/**
 * Marks the process of one incarnation offline because it exited, with the exit in the event. Does nothing if a
 * newer incarnation has started meanwhile or the agent is already offline or failed. Returns whether it changed.
 */
export async function markExited(store: Store, name: string, incarnation: number, reason: string, evidence: Record<string, unknown>, now: number): Promise<boolean> {
  const sql = `UPDATE agents SET state = 'offline', state_since = :now, state_reason = :reason, state_evidence = :evidence, updated_at = :now
               WHERE name = :name AND incarnation = :incarnation AND state NOT IN ('offline', 'failed')`;
  return (await store.sql.run(sql, { name, incarnation, reason, evidence: JSON.stringify(evidence), now })).changes === 1;
}

/** Marks an agent failed (restart attempts exhausted), with the evidence; its executing commands are cancelled by the trigger. */
export async function markFailed(store: Store, name: string, reason: string, evidence: Record<string, unknown>, now: number): Promise<boolean> {
  const sql = `UPDATE agents SET state = 'failed', state_since = :now, state_reason = :reason, state_evidence = :evidence, updated_at = :now
               WHERE name = :name AND state <> 'failed'`;
  return (await store.sql.run(sql, { name, reason, evidence: JSON.stringify(evidence), now })).changes === 1;
}

/** Forgets the supervisor of an agent, if it is still the one given (a wrapper that is exiting). */
export async function clearSupervisor(store: Store, name: string, supervisorPid: number): Promise<void> {
  await store.sql.run('UPDATE agents SET supervisor_pid = NULL, supervisor_start_time = NULL WHERE name = :name AND supervisor_pid = :pid', { name, pid: supervisorPid });
}

/** Records a restart decision: the unstable-restart count and when it was made (for the backoff of the next one). */
export async function noteRestartAttempt(store: Store, name: string, attempts: number, now: number): Promise<void> {
  const changed = (await store.sql.run('UPDATE agents SET restart_attempts = :attempts, last_restart_at = :now, updated_at = :now WHERE name = :name', { name, attempts, now })).changes;
  if (changed !== 1) throw new AgentNotFoundError(name);
}

/**
 * Records that agentctl refused to act for an agent (a signal or a launch it judged unsafe): an event that keeps the
 * agent's state, with the refusal in its evidence (rule 'refused'). Not repeated while the agent's last event is
 * the same refusal, so a health loop refusing on every pass writes it once. Returns whether it was written.
 */
export async function noteRefusal(store: Store, name: string, reason: string, evidence: Record<string, unknown>, now: number): Promise<boolean> {
  const sql = `INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
               SELECT a.id, a.name, :now, a.state, a.state, :reason, :evidence FROM agents a
                WHERE a.name = :name AND NOT EXISTS (
                  SELECT 1 FROM events e WHERE e.id = (SELECT MAX(id) FROM events WHERE agent_id = a.id)
                     AND e.reason = :reason AND ${jsonField(store.sql.dialect, 'e.evidence', 'rule')} = 'refused')`;
  const json = JSON.stringify({ rule: 'refused', ...evidence });
  return (await store.sql.run(sql, { name, reason, evidence: json, now })).changes === 1;
}

/** Rules of the convictions the health loop may answer with a restart: the clock and crash proofs, never a goodbye. */
const CONVICTION_RULES = ['clock', 'pid', 'boot-id'];

/**
 * The agents `monitor --restart-stale` restarts: stale or offline by a conviction (the clock or a crash proof) and
 * registered with a launch command. Agents that said goodbye, were set offline by an operator, exited under
 * `agentctl run` (whose own restart policy decides), failed or were deregistered are left alone.
 */
export async function restartCandidates(store: Store): Promise<string[]> {
  const rows = await store.sql.all<{ name: string }>(
    `SELECT name FROM agents
      WHERE state IN ('stale', 'offline') AND launch_argv IS NOT NULL AND deregistered_at IS NULL
        AND ${jsonField(store.sql.dialect, 'state_evidence', 'rule')} IN (${CONVICTION_RULES.map(() => '?').join(', ')})
      ORDER BY name`,
    CONVICTION_RULES,
  );
  return rows.map((r) => String(r.name));
}
