/** The one place where snake_case rows become camelCase records. */

export const AGENT_STATES = ['initializing', 'active', 'stale', 'offline', 'error', 'failed', 'maintenance'] as const;
export type AgentState = (typeof AGENT_STATES)[number];
export type Availability = 'available' | 'busy';
export type ReportedStatusValue = 'ok' | 'busy' | 'error';
export const RESTART_POLICIES = ['never', 'on-failure', 'always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];
export const COMMAND_STATES = ['queued', 'executing', 'completed', 'failed', 'cancelled'] as const;
export type CommandState = (typeof COMMAND_STATES)[number];

/** An agent as stored: its contract, identity, last report and persisted state. */
export interface AgentRecord {
  id: number;
  name: string;
  group: string | null;
  intervalMs: number;
  staleMultiplier: number;
  offlineAfterMs: number;
  pid: number | null;
  pidStartTime: number | null;
  host: string | null;
  bootId: string | null;
  incarnation: number;
  heartbeatSeq: number;
  lastHeartbeatAt: number | null;
  reportedStatus: ReportedStatusValue;
  message: string | null;
  availability: Availability;
  metadata: Record<string, unknown>;
  progress: number | null;
  /** The persisted state; what is true now is derived from it and the clock (core/state.ts). */
  state: AgentState;
  stateSince: number;
  stateReason: string | null;
  stateEvidence: Record<string, unknown> | null;
  maintenanceUntil: number | null;
  launch: { argv: string[]; cwd: string | null } | null;
  restartCount: number;
  /** The `agentctl run` process supervising the agent, when there is one (pid and start time). */
  supervisorPid: number | null;
  supervisorStartTime: number | null;
  restartPolicy: RestartPolicy | null;
  maxRestarts: number | null;
  /** Restarts in a row that did not stay up for the stable period (drives backoff and `failed`). */
  restartAttempts: number;
  lastRestartAt: number | null;
  createdAt: number;
  startedAt: number;
  updatedAt: number;
  deregisteredAt: number | null;
}

export interface EventRecord {
  id: number;
  agentId: number | null;
  agentName: string;
  at: number;
  fromState: AgentState | null;
  toState: AgentState;
  reason: string | null;
  evidence: Record<string, unknown> | null;
}

/** The events columns in EventRecord's order (for rows read as arrays: Store.iterateEventRows). */
export const EVENT_COLUMNS = ['id', 'agent_id', 'agent_name', 'at', 'from_state', 'to_state', 'reason', 'evidence'] as const;

function json<T>(text: unknown, fallback: T): T {
  if (typeof text !== 'string') return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

type Row = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
/** A nullable numeric column (PostgreSQL's BIGINT arrives as a string). */
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export function toAgentRecord(r: Row): AgentRecord {
  const argv = json<unknown>(r.launch_argv, null);
  return {
    id: num(r.id),
    name: String(r.name),
    group: strOrNull(r.group_name),
    intervalMs: num(r.interval_ms),
    staleMultiplier: num(r.stale_multiplier),
    offlineAfterMs: num(r.offline_after_ms),
    pid: numOrNull(r.pid),
    pidStartTime: numOrNull(r.pid_start_time),
    host: strOrNull(r.host),
    bootId: strOrNull(r.boot_id),
    incarnation: num(r.incarnation),
    heartbeatSeq: num(r.heartbeat_seq),
    lastHeartbeatAt: numOrNull(r.last_heartbeat_at),
    reportedStatus: r.reported_status as ReportedStatusValue,
    message: strOrNull(r.message),
    availability: r.availability as Availability,
    metadata: json<Record<string, unknown>>(r.metadata, {}),
    progress: numOrNull(r.progress),
    state: r.state as AgentState,
    stateSince: num(r.state_since),
    stateReason: strOrNull(r.state_reason),
    stateEvidence: json<Record<string, unknown> | null>(r.state_evidence, null),
    maintenanceUntil: numOrNull(r.maintenance_until),
    launch: Array.isArray(argv) ? { argv: argv.map(String), cwd: strOrNull(r.launch_cwd) } : null,
    restartCount: num(r.restart_count),
    supervisorPid: numOrNull(r.supervisor_pid),
    supervisorStartTime: numOrNull(r.supervisor_start_time),
    restartPolicy: (r.restart_policy ?? null) as RestartPolicy | null,
    maxRestarts: numOrNull(r.max_restarts),
    restartAttempts: num(r.restart_attempts ?? 0),
    lastRestartAt: numOrNull(r.last_restart_at),
    createdAt: num(r.created_at),
    startedAt: num(r.started_at),
    updatedAt: num(r.updated_at),
    deregisteredAt: numOrNull(r.deregistered_at),
  };
}

export function toEventRecord(r: Row): EventRecord {
  return {
    id: num(r.id),
    agentId: numOrNull(r.agent_id),
    agentName: String(r.agent_name),
    at: num(r.at),
    fromState: (r.from_state ?? null) as AgentState | null,
    toState: r.to_state as AgentState,
    reason: strOrNull(r.reason),
    evidence: json<Record<string, unknown> | null>(r.evidence, null),
  };
}

/** A command sent to an agent (seed 001's command records). */
export interface CommandRecord {
  id: number;
  agentId: number;
  agentName: string;
  payload: string;
  state: CommandState;
  claimToken: string | null;
  claimedByIncarnation: number | null;
  createdAt: number;
  deadlineAt: number | null;
  claimedAt: number | null;
  finishedAt: number | null;
  result: string | null;
  error: string | null;
}

export function toCommandRecord(r: Row): CommandRecord {
  return {
    id: num(r.id),
    agentId: num(r.agent_id),
    agentName: String(r.agent_name ?? ''),
    payload: String(r.payload),
    state: r.state as CommandState,
    claimToken: strOrNull(r.claim_token),
    claimedByIncarnation: numOrNull(r.claimed_by_incarnation),
    createdAt: num(r.created_at),
    deadlineAt: numOrNull(r.deadline_at),
    claimedAt: numOrNull(r.claimed_at),
    finishedAt: numOrNull(r.finished_at),
    result: strOrNull(r.result),
    error: strOrNull(r.error),
  };
}
