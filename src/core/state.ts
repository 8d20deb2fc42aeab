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

/** What deriveState reads of an agent: its persisted state, its timestamps and its contract. */
export type ClockFields = Pick<
  AgentRecord,
  'state' | 'stateSince' | 'stateReason' | 'lastHeartbeatAt' | 'startedAt' | 'intervalMs' | 'staleMultiplier' | 'offlineAfterMs' | 'maintenanceUntil' | 'reportedStatus'
>;

/** The stale window of an agent's contract: interval × multiplier, in ms. */
export function staleAfterMs(a: Pick<AgentRecord, 'intervalMs' | 'staleMultiplier'>): number {
  return Math.floor(a.intervalMs * a.staleMultiplier);
}

/**
 * Where the agent's silence is counted from: its last heartbeat, or the start of its current incarnation if it has
 * not beaten since (a restarted agent is judged from its restart, like a new one, not from its predecessor's beat).
 */
export function clockStart(a: Pick<AgentRecord, 'lastHeartbeatAt' | 'startedAt'>): number {
  return Math.max(a.lastHeartbeatAt ?? a.startedAt, a.startedAt);
}

/** True if the current incarnation has beaten at least once. */
export function hasBeatenSinceStart(a: Pick<AgentRecord, 'lastHeartbeatAt' | 'startedAt'>): boolean {
  return a.lastHeartbeatAt !== null && a.lastHeartbeatAt >= a.startedAt;
}

/** How long the agent has been silent by its contract's clock (see clockStart), in ms. */
export function heartbeatAgeMs(a: Pick<AgentRecord, 'lastHeartbeatAt' | 'startedAt'>, now: number): number {
  return now - clockStart(a);
}

/** True if the agent is overdue by its own contract: no heartbeat for interval × multiplier (seed 002's isAgentStale). */
export function isOverdue(a: AgentRecord, now: number): boolean {
  return heartbeatAgeMs(a, now) >= staleAfterMs(a);
}

/** True while an agent is in a maintenance window that has not ended at `now` (NULL until: until cleared). */
export function inMaintenance(a: Pick<AgentRecord, 'state' | 'maintenanceUntil'>, now: number): boolean {
  return a.state === 'maintenance' && (a.maintenanceUntil === null || a.maintenanceUntil > now);
}

/**
 * Derives the state at `now` from the persisted one, exactly as the database's heartbeat trigger does:
 * offline and failed stay until a heartbeat; maintenance holds until it expires; otherwise an agent silent for its
 * offline threshold is offline, and one silent for its stale window is stale ("stuck in initializing" if it has not
 * beaten since it started). Silence counts from clockStart.
 * The boundaries are inclusive: silent for exactly the window is stale.
 */
export function deriveState(a: ClockFields, now: number): DerivedState {
  const persisted: DerivedState = { state: a.state, since: a.stateSince, reason: a.stateReason, byClock: false };
  if (a.state === 'offline' || a.state === 'failed') return persisted;
  if (inMaintenance(a, now)) return persisted;
  const ref = clockStart(a);
  const age = now - ref;
  if (age >= a.offlineAfterMs) {
    return { state: 'offline', since: ref + a.offlineAfterMs, reason: 'no heartbeat within the offline threshold', byClock: true };
  }
  if (age >= staleAfterMs(a)) {
    const reason = hasBeatenSinceStart(a) ? 'heartbeat overdue' : 'stuck in initializing';
    if (a.state === 'stale') return persisted;
    return { state: 'stale', since: ref + staleAfterMs(a), reason, byClock: true };
  }
  if (a.state === 'maintenance') {
    const state: AgentState = !hasBeatenSinceStart(a) ? 'initializing' : a.reportedStatus === 'error' ? 'error' : 'active';
    return { state, since: a.maintenanceUntil!, reason: 'maintenance window ended', byClock: true };
  }
  return persisted;
}

/** How many agents are in each state, every state present (in the order status shows them). */
export function countStates(agents: readonly Pick<AgentRecord, 'state'>[]): Record<AgentState, number> {
  const counts: Record<AgentState, number> = { active: 0, initializing: 0, stale: 0, error: 0, maintenance: 0, offline: 0, failed: 0 };
  for (const a of agents) counts[a.state]++;
  return counts;
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
