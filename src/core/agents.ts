import { AgentNotFoundError, UsageError } from '../errors.js';
import type { HeartbeatParams, RegisterParams, Store } from '../store/store.js';
import { AGENT_STATES, type AgentRecord, type AgentState, type Availability } from '../store/rows.js';
import { bootId, hostName, processStartTime } from './host.js';
import { type ClockFields, type DerivedState, deriveState, staleAfterMs } from './state.js';
import { MAX_DURATION_MS } from './duration.js';
import { validateGroup, validateMessage, validateMetadata, validateName, validatePid, validateReportedStatus } from './validate.js';

/** An agent as a reader sees it at one moment: the stored record with `state` derived from the clock and its contract. */
export interface AgentView extends Omit<AgentRecord, 'state' | 'stateSince' | 'stateReason'> {
  state: AgentState;
  stateSince: number;
  stateReason: string | null;
  /** The state as stored (the derived `state` differs when the clock has moved on and no health loop recorded it). */
  persistedState: AgentState;
  heartbeatAgeMs: number | null;
  staleAfterMs: number;
  /** Time since the current incarnation started, while it is alive; null once offline or failed. */
  uptimeMs: number | null;
}

/** Derives the view of one record at `now`. */
export function viewAgent(a: AgentRecord, now: number): AgentView {
  const d = deriveState(a, now);
  return {
    ...a,
    state: d.state,
    stateSince: d.since,
    stateReason: d.reason,
    persistedState: a.state,
    heartbeatAgeMs: a.lastHeartbeatAt === null ? null : now - a.lastHeartbeatAt,
    staleAfterMs: staleAfterMs(a),
    uptimeMs: uptimeOf(a, d, now),
  };
}

export interface AgentQuery {
  /** Only these agents; an unknown name throws AgentNotFoundError. */
  names?: string[];
  group?: string;
  /** Only agents whose derived state is one of these. */
  states?: AgentState[];
  /** Only agents whose name contains this text, in any case (the HTTP API's q; not with `names`). */
  nameContains?: string;
  includeDeregistered?: boolean;
}

/** Seed 002's get_registered_agents: every registered agent with its state as of `now`. */
export async function getRegisteredAgents(store: Store, now: number, q: AgentQuery = {}): Promise<AgentView[]> {
  let records: AgentRecord[];
  if (q.names && q.names.length) {
    records = [];
    for (const name of new Set(q.names)) {
      validateName(name);
      const r = await store.getAgent(name);
      if (!r) throw new AgentNotFoundError(name);
      records.push(r);
    }
    if (q.group !== undefined) records = records.filter((r) => r.group === q.group);
  } else {
    records = await store.listAgents({ includeDeregistered: q.includeDeregistered ?? false, ...(q.group !== undefined ? { group: q.group } : {}) });
  }
  const views = records.map((r) => viewAgent(r, now));
  return q.states && q.states.length ? views.filter((v) => q.states!.includes(v.state)) : views;
}

/**
 * The columns deriveState reads, in this order, at the head of every row readAgents gives: a command names only the
 * further columns it prints (see readAgents).
 */
export const CLOCK_COLUMNS = [
  'state', 'state_since', 'state_reason', 'last_heartbeat_at', 'started_at', 'interval_ms', 'stale_multiplier', 'offline_after_ms', 'maintenance_until', 'reported_status',
] as const;

const nullable = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** The clock fields of a raw row that starts with CLOCK_COLUMNS, converted as toAgentRecord converts them. */
export function clockOf(r: readonly unknown[]): ClockFields {
  return {
    state: r[0] as AgentState,
    stateSince: Number(r[1]),
    stateReason: r[2] === null || r[2] === undefined ? null : String(r[2]),
    lastHeartbeatAt: nullable(r[3]),
    startedAt: Number(r[4]),
    intervalMs: Number(r[5]),
    staleMultiplier: Number(r[6]),
    offlineAfterMs: Number(r[7]),
    maintenanceUntil: nullable(r[8]),
    reportedStatus: r[9] as AgentRecord['reportedStatus'],
  };
}

/** One agent as readAgents gives it: the raw row, its clock fields and its state derived at `now`. */
export interface ReadAgent {
  /** CLOCK_COLUMNS, then the columns asked for (at CLOCK_COLUMNS.length + i). */
  row: unknown[];
  clock: ClockFields;
  derived: DerivedState;
}

/**
 * The agents a query selects, as getRegisteredAgents selects them (named ones in the order given, an unknown name
 * throws AgentNotFoundError before anything is read; else all, ordered by name), one row at a time, each with its
 * state derived at `now` exactly as viewAgent derives it. Reads only CLOCK_COLUMNS and `columns`, so a command that
 * prints a few columns of a large fleet neither reads nor holds the rest. They come in batches (an agent per row
 * of each), read as they are consumed; the store is busy while it iterates.
 */
export async function* readAgents(store: Store, now: number, q: AgentQuery, columns: readonly string[], batch?: number): AsyncGenerator<ReadAgent[]> {
  const all = [...CLOCK_COLUMNS, ...columns, ...(q.group !== undefined && q.names?.length ? ['group_name'] : [])];
  let batches: AsyncIterable<unknown[][]> | Iterable<unknown[][]>;
  if (q.names && q.names.length) {
    const found: unknown[][] = [];
    for (const name of new Set(q.names)) {
      validateName(name);
      const r = await store.agentRow(all, name);
      if (!r) throw new AgentNotFoundError(name);
      if (q.group === undefined || r[all.length - 1] === q.group) found.push(r);
    }
    batches = [found];
  } else {
    batches = store.agentRowBatches(all, { includeDeregistered: q.includeDeregistered ?? false, ...(q.group !== undefined ? { group: q.group } : {}), ...(q.nameContains ? { nameContains: q.nameContains } : {}) }, batch);
  }
  for await (const rows of batches) {
    const out: ReadAgent[] = [];
    for (const row of rows) {
      const clock = clockOf(row);
      const derived = deriveState(clock, now);
      if (q.states && q.states.length && !q.states.includes(derived.state)) continue;
      out.push({ row, clock, derived });
    }
    if (out.length) yield out;
  }
}

/** Time since the current incarnation started while it is alive (viewAgent's uptimeMs), or null. */
export function uptimeOf(clock: ClockFields, d: DerivedState, now: number): number | null {
  return d.state !== 'offline' && d.state !== 'failed' ? Math.max(0, now - clock.startedAt) : null;
}

export interface ContractInput {
  intervalMs?: number | undefined;
  staleMultiplier?: number | undefined;
  offlineAfterMs?: number | undefined;
}

export interface RegisterInput extends ContractInput {
  name: string;
  group?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  /** The agent's process, when the caller knows it; its start time, host and boot id are recorded with it. */
  pid?: number | undefined;
  launch?: { argv: string[]; cwd: string } | undefined;
}

export interface HeartbeatInput extends ContractInput {
  name: string;
  status?: 'ok' | 'busy' | 'error' | undefined;
  message?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  progress?: number | undefined;
  pid?: number | undefined;
}

function validateContract(c: ContractInput): void {
  if (c.intervalMs !== undefined && (!Number.isInteger(c.intervalMs) || c.intervalMs <= 0 || c.intervalMs > MAX_DURATION_MS)) {
    throw new UsageError(`invalid interval ${c.intervalMs}: must be a whole number of ms above 0`);
  }
  if (c.offlineAfterMs !== undefined && (!Number.isInteger(c.offlineAfterMs) || c.offlineAfterMs <= 0 || c.offlineAfterMs > MAX_DURATION_MS)) {
    throw new UsageError(`invalid offline threshold ${c.offlineAfterMs}: must be a whole number of ms above 0`);
  }
  if (c.staleMultiplier !== undefined && (!Number.isFinite(c.staleMultiplier) || c.staleMultiplier < 1 || c.staleMultiplier > 1000)) {
    throw new UsageError(`invalid stale multiplier ${c.staleMultiplier}: must be a number from 1 to 1000`);
  }
}

/** Reads the identity of a live process to record with an agent; throws UsageError if there is no such process. */
export function processIdentity(pid: number): { pid: number; pidStartTime: number | null; host: string; bootId: string | null } {
  validatePid(pid);
  const start = processStartTime(pid);
  if (start === null) throw new UsageError(`no process with pid ${pid} is running on this host; --pid must name the agent's live process`);
  return { pid, pidStartTime: start, host: hostName(), bootId: bootId() };
}

/** The registration columns of an input whose name and contract are already validated; reads the pid's identity. */
function registerParams(input: RegisterInput | HeartbeatInput): RegisterParams {
  const identity = input.pid !== undefined ? processIdentity(input.pid) : undefined;
  return {
    name: input.name,
    intervalMs: input.intervalMs ?? null,
    staleMultiplier: input.staleMultiplier ?? null,
    offlineAfterMs: input.offlineAfterMs ?? null,
    ...(identity ?? {}),
  };
}

/**
 * Validates a registration completely (name, contract, group, metadata, pid, launch) without touching the database,
 * and returns what the store writes. Validating is preparing: the pid's identity is read and the metadata
 * serialised once. The CLI calls it before opening the database, so bad input creates nothing.
 */
export function prepareRegister(input: RegisterInput): RegisterParams {
  validateName(input.name);
  validateContract(input);
  if (input.group !== undefined) validateGroup(input.group);
  if (input.launch && (!Array.isArray(input.launch.argv) || input.launch.argv.length === 0)) throw new UsageError('the launch command is empty');
  const metadataJson = input.metadata !== undefined ? validateMetadata(input.metadata) : null;
  return { ...registerParams(input), group: input.group ?? null, metadataJson, launch: input.launch ?? null };
}

/** Registers an agent or updates its contract (idempotent). Validates everything before writing. */
export async function registerAgent(store: Store, input: RegisterInput, now: number): Promise<AgentRecord> {
  return (await store.register(prepareRegister(input), now)).agent;
}

/** A heartbeat validated and turned into the store's parameters (see prepareHeartbeat). */
export interface PreparedHeartbeat {
  beat: HeartbeatParams;
  /** Set when the heartbeat also changes the contract or names the pid: then it registers and beats in one transaction. */
  register: RegisterParams | null;
}

/** Validates a heartbeat completely without touching the database, and returns what writeHeartbeat writes. */
export function prepareHeartbeat(input: HeartbeatInput): PreparedHeartbeat {
  validateName(input.name);
  validateContract(input);
  if (input.status !== undefined) validateReportedStatus(input.status);
  if (input.message !== undefined) validateMessage(input.message);
  if (input.progress !== undefined && (!Number.isSafeInteger(input.progress) || input.progress < 0)) {
    throw new UsageError(`invalid progress '${input.progress}': must be a whole number of at least 0`);
  }
  const metadataJson = input.metadata !== undefined ? validateMetadata(input.metadata) : null;
  const beat = { name: input.name, status: input.status ?? null, message: input.message ?? null, metadataJson, progress: input.progress ?? null };
  const needsRegister = input.pid !== undefined || input.intervalMs !== undefined || input.staleMultiplier !== undefined || input.offlineAfterMs !== undefined;
  return { beat, register: needsRegister ? registerParams(input) : null };
}

/** Writes a prepared heartbeat: one autocommit UPDATE, or registration and heartbeat in one transaction. */
export async function writeHeartbeat(store: Store, p: PreparedHeartbeat, now: number): Promise<{ registered: boolean; agent?: AgentRecord }> {
  return p.register ? await store.registerAndHeartbeat(p.register, p.beat, now) : await store.heartbeat(p.beat, now);
}

/**
 * Seed 002's update_heartbeat: records one heartbeat, registering the agent on first use. A heartbeat that also
 * changes the contract or names the pid registers and beats in one transaction; a plain one is a single write.
 */
export async function updateHeartbeat(store: Store, input: HeartbeatInput, now: number): Promise<{ registered: boolean; agent?: AgentRecord }> {
  return await writeHeartbeat(store, prepareHeartbeat(input), now);
}

/** What `set-status` (and seed 002's update_agent_state) may set. */
export type StatusTarget = AgentState | Availability;
export const STATUS_TARGETS: readonly StatusTarget[] = ['available', 'busy', ...AGENT_STATES];

export interface UpdateStateOptions {
  reason?: string | undefined;
  /** For maintenance: how long it lasts (absent: until cleared by set-status available/busy or a heartbeat after expiry). */
  forMs?: number | undefined;
  /**
   * The access token that asked (the HTTP API's operator controls): named in the evidence, and then every control
   * is an event, a change of availability or a state it already had included.
   */
  token?: string | undefined;
}

/**
 * Seed 002's update_agent_state, and seed 000's manual controls: `available`/`busy` set availability (and end a
 * maintenance window); `maintenance` pauses alerts, optionally for `forMs`; `offline` marks it gone (cancelling its
 * executing commands); other states are set as given. Every change is an event with the reason.
 */
export async function updateAgentState(store: Store, name: string, target: StatusTarget, now: number, opts: UpdateStateOptions = {}) {
  validateName(name);
  if (!STATUS_TARGETS.includes(target)) throw new UsageError(`invalid status '${target}': use one of ${STATUS_TARGETS.join(', ')}`);
  if (opts.reason !== undefined) validateMessage(opts.reason);
  if (opts.forMs !== undefined && target !== 'maintenance') throw new UsageError('--for applies only to maintenance');
  const why = (fallback: string) => (opts.reason ? opts.reason : fallback);
  const by = opts.token !== undefined ? { token: opts.token } : {};
  return store.transition(name, now, (a) => {
    // An act that leaves the state as it was keeps the state's reason; with a token it is still an event of its own.
    const unchanged = (fallback: string, evidence: Record<string, unknown>) =>
      opts.token !== undefined ? { alwaysEvent: true, event: { reason: why(fallback), evidence: { ...evidence, ...by } } } : {};
    if (target === 'available' || target === 'busy') {
      if (a.state === 'maintenance') {
        const resumed = deriveState({ ...a, maintenanceUntil: now }, now);
        return { to: resumed.state, reason: why(`maintenance ended by operator`), evidence: { rule: 'manual', availability: target, ...by }, availability: target };
      }
      return { to: a.state, reason: a.stateReason ?? '', evidence: a.stateEvidence, availability: target, ...unchanged(`set ${target} by operator`, { rule: 'manual', availability: target }) };
    }
    if (target === 'maintenance') {
      return {
        to: 'maintenance',
        reason: why('maintenance'),
        evidence: { rule: 'manual', until: opts.forMs !== undefined ? now + opts.forMs : null, ...by },
        maintenanceUntil: opts.forMs !== undefined ? now + opts.forMs : null,
        alwaysEvent: true,
      };
    }
    if (a.state === target) {
      if (opts.token === undefined) return null;
      return { to: a.state, reason: a.stateReason ?? '', evidence: a.stateEvidence, maintenanceUntil: a.maintenanceUntil, ...unchanged(`set ${target} by operator (it was ${target} already)`, { rule: 'manual', previous: a.state }) };
    }
    return { to: target, reason: why(`set ${target} by operator`), evidence: { rule: 'manual', previous: a.state, ...by } };
  });
}

/** Deregisters an agent: offline with reason "deregistered", hidden from listings until it registers or beats again. */
export async function deregisterAgent(store: Store, name: string, now: number, reason?: string) {
  validateName(name);
  return await store.transition(name, now, (a) => ({
    to: 'offline',
    reason: reason ?? 'deregistered',
    evidence: { rule: 'deregister', previous: a.state },
    deregister: true,
    alwaysEvent: true,
  }));
}
