/**
 * Text for people and documents for programs, without colours (so a command that prints JSON or a plugin line
 * does not load the colour library): the summary line, one-line cells, and an agent as `status --json` gives it,
 * written from a raw row without building the record first.
 */
import { type ReadAgent, CLOCK_COLUMNS, uptimeOf } from '../core/agents.js';
import { formatDuration } from '../core/duration.js';
import { staleAfterMs } from '../core/state.js';
import { safeText } from '../core/text.js';
import { jsonIso, jsonNumber, jsonNumberOrNull, jsonString, jsonStringOrNull } from '../core/json-text.js';
import type { AgentState } from '../store/rows.js';

/** `n word`, or `n words`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * `s` on one line for a terminal: runs of white space (newlines included) become one space, what is left that a
 * terminal would obey is shown escaped (safeText), and the result is cut to `n` characters with an ellipsis.
 */
export function oneLine(s: string, n: number): string {
  const one = safeText(s.replace(/\s+/g, ' '));
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

/** "3 agents: 2 active, 1 offline" from the counts per state (in their order), each state painted by `paint`. */
export function summaryLine(counts: Record<AgentState, number>, paint?: (s: AgentState) => string): string {
  let total = 0;
  const parts: string[] = [];
  for (const [s, n] of Object.entries(counts) as [AgentState, number][]) {
    total += n;
    if (n > 0) parts.push(`${n} ${paint ? paint(s) : s}`);
  }
  return `${plural(total, 'agent')}${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

/** The last-seen text: "Online now" while beating on time, "42s ago", or "never". */
export function lastSeen(a: { lastHeartbeatAt: number | null; heartbeatAgeMs: number | null; state: AgentState; intervalMs: number }): string {
  if (a.lastHeartbeatAt === null || a.heartbeatAgeMs === null) return 'never';
  if ((a.state === 'active' || a.state === 'error') && a.heartbeatAgeMs < a.intervalMs) return 'Online now';
  return `${formatDuration(Math.max(0, a.heartbeatAgeMs))} ago`;
}

// ---- status --json, one agent at a time ----

/** The columns an agent's JSON needs beyond CLOCK_COLUMNS, in the order they are read. */
export const AGENT_JSON_COLUMNS = [
  'id', 'name', 'group_name', 'pid', 'pid_start_time', 'host', 'boot_id', 'incarnation', 'heartbeat_seq', 'message', 'availability',
  'metadata', 'progress', 'state_evidence', 'launch_argv', 'launch_cwd', 'restart_count', 'supervisor_pid', 'supervisor_start_time',
  'restart_policy', 'max_restarts', 'restart_attempts', 'last_restart_at', 'created_at', 'updated_at', 'deregistered_at',
] as const;

const K = CLOCK_COLUMNS.length;
const at = Object.fromEntries(AGENT_JSON_COLUMNS.map((c, i) => [c, K + i])) as Record<(typeof AGENT_JSON_COLUMNS)[number], number>;

// The conversions of toAgentRecord (store/rows.ts), written as JSON text.
const jNum = jsonNumber;
const jNumOrNull = jsonNumberOrNull;
const jStrOrNull = jsonStringOrNull;
const jIso = jsonIso;
/** Stored JSON text spliced as it is: the schema's CHECKs hold it to valid JSON (json_valid). */
const jStored = (v: unknown, fallback: string): string => (typeof v === 'string' ? v : fallback);

function jLaunch(argv: unknown, cwd: unknown): string {
  if (typeof argv !== 'string') return 'null';
  // Small and rare, and its elements are shown as strings whatever a foreign writer stored: parsed, not spliced.
  let parsed: unknown;
  try {
    parsed = JSON.parse(argv);
  } catch {
    return 'null';
  }
  return Array.isArray(parsed) ? `{"argv":${JSON.stringify(parsed.map(String))},"cwd":${jStrOrNull(cwd)}}` : 'null';
}

/**
 * An agent of `status --json` (the fields of agentJson(viewAgent(record, now)), in its order) as JSON text, from a
 * row of readAgents with AGENT_JSON_COLUMNS; `pad` indents its fields as JSON.stringify(…, null, 2) would at that
 * depth. Stored JSON (metadata, evidence) is spliced as stored.
 */
export function agentJsonText({ row: r, clock: c, derived: d }: ReadAgent, now: number, pad: string): string {
  const age = c.lastHeartbeatAt === null ? null : now - c.lastHeartbeatAt;
  const uptime = uptimeOf(c, d, now);
  const f = `,\n${pad}  `;
  return (
    `{\n${pad}  "id": ${jNum(r[at.id])}` +
    `${f}"name": ${jsonString(String(r[at.name]))}` +
    `${f}"group": ${jStrOrNull(r[at.group_name])}` +
    `${f}"intervalMs": ${jNum(c.intervalMs)}` +
    `${f}"staleMultiplier": ${jNum(c.staleMultiplier)}` +
    `${f}"offlineAfterMs": ${jNum(c.offlineAfterMs)}` +
    `${f}"pid": ${jNumOrNull(r[at.pid])}` +
    `${f}"pidStartTime": ${jNumOrNull(r[at.pid_start_time])}` +
    `${f}"host": ${jStrOrNull(r[at.host])}` +
    `${f}"bootId": ${jStrOrNull(r[at.boot_id])}` +
    `${f}"incarnation": ${jNum(r[at.incarnation])}` +
    `${f}"heartbeatSeq": ${jNum(r[at.heartbeat_seq])}` +
    `${f}"lastHeartbeatAt": ${jNumOrNull(c.lastHeartbeatAt)}` +
    `${f}"reportedStatus": ${JSON.stringify(c.reportedStatus)}` +
    `${f}"message": ${jStrOrNull(r[at.message])}` +
    `${f}"availability": ${JSON.stringify(r[at.availability])}` +
    `${f}"metadata": ${jStored(r[at.metadata], '{}')}` +
    `${f}"progress": ${jNumOrNull(r[at.progress])}` +
    `${f}"state": ${JSON.stringify(d.state)}` +
    `${f}"stateSince": ${jNum(d.since)}` +
    `${f}"stateReason": ${d.reason === null ? 'null' : JSON.stringify(d.reason)}` +
    `${f}"stateEvidence": ${jStored(r[at.state_evidence], 'null')}` +
    `${f}"maintenanceUntil": ${jNumOrNull(c.maintenanceUntil)}` +
    `${f}"launch": ${jLaunch(r[at.launch_argv], r[at.launch_cwd])}` +
    `${f}"restartCount": ${jNum(r[at.restart_count])}` +
    `${f}"supervisorPid": ${jNumOrNull(r[at.supervisor_pid])}` +
    `${f}"supervisorStartTime": ${jNumOrNull(r[at.supervisor_start_time])}` +
    `${f}"restartPolicy": ${JSON.stringify(r[at.restart_policy] ?? null)}` +
    `${f}"maxRestarts": ${jNumOrNull(r[at.max_restarts])}` +
    `${f}"restartAttempts": ${jNum(r[at.restart_attempts] ?? 0)}` +
    `${f}"lastRestartAt": ${jNumOrNull(r[at.last_restart_at])}` +
    `${f}"createdAt": ${jNum(r[at.created_at])}` +
    `${f}"startedAt": ${jNum(c.startedAt)}` +
    `${f}"updatedAt": ${jNum(r[at.updated_at])}` +
    `${f}"deregisteredAt": ${jNumOrNull(r[at.deregistered_at])}` +
    `${f}"persistedState": ${JSON.stringify(c.state)}` +
    `${f}"heartbeatAgeMs": ${age === null ? 'null' : jNum(age)}` +
    `${f}"staleAfterMs": ${jNum(staleAfterMs(c))}` +
    `${f}"uptimeMs": ${uptime === null ? 'null' : jNum(uptime)}` +
    `${f}"lastHeartbeat": ${jIso(c.lastHeartbeatAt)}` +
    `${f}"stateSinceIso": ${jIso(d.since)}` +
    `${f}"secondsSinceHeartbeat": ${age === null ? 'null' : jNum(Math.floor(age / 1000))}` +
    `\n${pad}}`
  );
}
