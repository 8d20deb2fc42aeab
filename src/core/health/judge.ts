import type { AgentRecord, AgentState } from '../../store/rows.js';
import { bootId, hostName, processStartTime } from '../host.js';
import { deriveState, heartbeatAgeMs, inMaintenance, staleAfterMs } from '../state.js';

/** What this host can tell about processes: injectable so tests can fake a reboot or a recycled pid. */
export interface LocalHost {
  host: string | null;
  bootId: string | null;
  /** Start time of `pid` (clock ticks after boot), or null if there is no such process. */
  startTime(pid: number): number | null;
}

/** This machine, as core/host.ts sees it. */
export function thisHost(): LocalHost {
  return { host: hostName(), bootId: bootId(), startTime: processStartTime };
}

/** Why a verdict was reached: the clock (reversible suspicion or the offline threshold), or a proof of a local crash. */
export type VerdictKind = 'clock' | 'crash' | 'maintenance';

/** A state change a pass would make for one agent, with its evidence. */
export interface Verdict {
  agent: AgentRecord;
  kind: VerdictKind;
  to: AgentState;
  /** When the agent entered the state: for the clock, the moment the threshold was crossed; for a crash, now. */
  since: number;
  reason: string;
  evidence: Record<string, unknown>;
}

/** How the agent's recorded process looks from here. */
export type PidCheck = 'alive' | 'gone' | 'reused' | 'rebooted' | 'not-local' | 'unknown';

/**
 * Checks the agent's recorded process on this host: gone (no such pid), reused (the pid now belongs to a process
 * with another start time), rebooted (another boot id). Only pids recorded as the agent's own count; an agent with
 * no pid, or on another host, is 'unknown' / 'not-local' and only the clock can convict it.
 */
export function checkPid(a: AgentRecord, local: LocalHost): { check: PidCheck; observedStartTime?: number | null } {
  if (a.pid === null) return { check: 'unknown' };
  if (a.host === null || local.host === null || a.host !== local.host) return { check: 'not-local' };
  if (a.bootId !== null && local.bootId !== null && a.bootId !== local.bootId) return { check: 'rebooted' };
  const start = local.startTime(a.pid);
  if (start === null) return { check: 'gone', observedStartTime: null };
  if (a.pidStartTime !== null && start !== a.pidStartTime) return { check: 'reused', observedStartTime: start };
  return { check: 'alive', observedStartTime: start };
}

const CRASH_REASONS: Record<'gone' | 'reused' | 'rebooted', string> = {
  gone: 'process gone',
  reused: 'process gone (its pid now belongs to another process)',
  rebooted: 'host rebooted',
};

/**
 * The one conviction rule, shared by every health-loop pass and by `cleanup --stale`: what the agent has become at
 * `now`. A proven local crash makes it offline at once, whatever its timers say; otherwise the clock decides exactly
 * as readers derive it (core/state.ts deriveState): stale past interval × multiplier (or stuck in initializing),
 * offline past its offline threshold, and an ended maintenance window ends. Null when nothing changes.
 */
export function judgeAgent(a: AgentRecord, now: number, local: LocalHost): Verdict | null {
  if (a.deregisteredAt !== null || a.state === 'offline' || a.state === 'failed') return null;
  if (inMaintenance(a, now)) return null;
  const age = heartbeatAgeMs(a, now);
  const thresholds = { heartbeat_age_ms: age, stale_after_ms: staleAfterMs(a), offline_after_ms: a.offlineAfterMs };
  const pid = checkPid(a, local);
  if (pid.check === 'gone' || pid.check === 'reused' || pid.check === 'rebooted') {
    return {
      agent: a,
      kind: 'crash',
      to: 'offline',
      since: now,
      reason: CRASH_REASONS[pid.check],
      evidence: {
        rule: pid.check === 'rebooted' ? 'boot-id' : 'pid',
        detected_by: 'monitor',
        // Which host's loop read the process table: on a shared database, the one that proved it.
        monitor_host: local.host,
        pid_check: pid.check,
        pid: a.pid,
        pid_start_time: a.pidStartTime,
        observed_start_time: pid.observedStartTime ?? null,
        boot_id: a.bootId,
        current_boot_id: local.bootId,
        ...thresholds,
      },
    };
  }
  const d = deriveState(a, now);
  if (!d.byClock || d.state === a.state) return null;
  return {
    agent: a,
    kind: d.reason === 'maintenance window ended' ? 'maintenance' : 'clock',
    to: d.state,
    since: d.since,
    reason: d.reason ?? 'clock',
    evidence: { rule: 'clock', detected_by: 'monitor', pid_check: pid.check, ...thresholds, maintenance_until: a.maintenanceUntil },
  };
}
