import type { AgentRecord, AgentState } from '../store/rows.js';

/** What is true of an agent at a given moment: its persisted state corrected by the clock and its own contract. */
export interface DerivedState {
  state: AgentState;
  /** When the agent entered `state`. */
  since: number;
  reason: string | null;
  /** True when the clock, not a stored transition, put the agent in this state (no health loop has recorded it yet). */
  byClock: boolean;
}

/** The stale window of an agent's contract: interval × multiplier, in ms. */
export function staleAfterMs(a: Pick<AgentRecord, 'intervalMs' | 'staleMultiplier'>): number {
  return Math.floor(a.intervalMs * a.staleMultiplier);
}

/** Time since the agent last beat (or, if it never has, since it started), in ms. */
export function heartbeatAgeMs(a: Pick<AgentRecord, 'lastHeartbeatAt' | 'startedAt'>, now: number): number {
  return now - (a.lastHeartbeatAt ?? a.startedAt);
}

/** True if the agent is overdue by its own contract: no heartbeat for interval × multiplier (seed 002's isAgentStale). */
export function isOverdue(a: AgentRecord, now: number): boolean {
  return heartbeatAgeMs(a, now) >= staleAfterMs(a);
}

/**
 * Derives the state at `now` from the persisted one, exactly as the database's heartbeat trigger does:
 * offline and failed stay until a heartbeat; maintenance holds until it expires; otherwise an agent silent for its
 * offline threshold is offline, and one silent for its stale window is stale ("stuck in initializing" if it never beat).
 * The boundaries are inclusive: silent for exactly the window is stale.
 */
export function deriveState(a: AgentRecord, now: number): DerivedState {
  const persisted: DerivedState = { state: a.state, since: a.stateSince, reason: a.stateReason, byClock: false };
  if (a.state === 'offline' || a.state === 'failed') return persisted;
  if (a.state === 'maintenance' && (a.maintenanceUntil === null || a.maintenanceUntil > now)) return persisted;
  const ref = a.lastHeartbeatAt ?? a.startedAt;
  const age = now - ref;
  if (age >= a.offlineAfterMs) {
    return { state: 'offline', since: ref + a.offlineAfterMs, reason: 'no heartbeat within the offline threshold', byClock: true };
  }
  if (age >= staleAfterMs(a)) {
    const reason = a.lastHeartbeatAt === null ? 'stuck in initializing' : 'heartbeat overdue';
    if (a.state === 'stale') return persisted;
    return { state: 'stale', since: ref + staleAfterMs(a), reason, byClock: true };
  }
  if (a.state === 'maintenance') {
    const state: AgentState = a.lastHeartbeatAt === null ? 'initializing' : a.reportedStatus === 'error' ? 'error' : 'active';
    return { state, since: a.maintenanceUntil!, reason: 'maintenance window ended', byClock: true };
  }
  return persisted;
}

/** Seed 003's three-valued view of an agent: online, offline, or unknown (not yet or no longer sure). */
export function seedStatus(state: AgentState): 'online' | 'offline' | 'unknown' {
  switch (state) {
    case 'active':
    case 'error':
      return 'online';
    case 'offline':
    case 'failed':
      return 'offline';
    default:
      return 'unknown';
  }
}

/** How bad a state is for `check`: 0 OK, 1 WARNING, 2 CRITICAL. */
export function stateSeverity(state: AgentState): 0 | 1 | 2 {
  switch (state) {
    case 'offline':
    case 'failed':
      return 2;
    case 'stale':
    case 'error':
      return 1;
    default:
      return 0;
  }
}
