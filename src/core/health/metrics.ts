import type { Store } from '../../store/store.js';
import { hostClockOffsets } from '../../store/fleet.js';
import { AGENT_STATES } from '../../store/rows.js';
import { readCounters, readMonitor } from '../../store/monitor.js';
import { countDerivedStates } from '../../store/fleet.js';
import { CLOCK_COLUMNS, readAgents } from '../agents.js';
import { countStates, heartbeatAgeMs, seedStatus } from '../state.js';
import { type Pieces, joinPieces } from '../json-text.js';

/** Escapes a Prometheus label value: backslash, double quote and newline. */
export function escapeLabel(v: string): string {
  if (!/[\\"\n]/.test(v)) return v;
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const labels = (l: Record<string, string | null>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${escapeLabel(v ?? '')}"`)
    .join(',')}}`;

const num = (n: number) => (Number.isFinite(n) ? String(Math.round(n * 1000) / 1000) : 'NaN');

const K = CLOCK_COLUMNS.length;
/** A metrics sample is a line of some 100 bytes: batches of this many rows (see ROW_BATCH). */
const SMALL_ROWS = 256;

/**
 * The fleet in Prometheus text exposition format (version 0.0.4) at `now`: agents per state, per-agent up and
 * heartbeat age, the health loop's counters (transitions, heartbeat timeouts, crash proofs, alerts sent and failed,
 * held convictions, suspect passes) and its last pass time and duration.
 */
export async function renderMetrics(store: Store, now: number): Promise<string> {
  return joinPieces(metricsText(store, now));
}

/**
 * renderMetrics in pieces written as the agents are read, in one read transaction: the counts per state come
 * from SQL, and each per-agent family is one pass over the agents (a family's samples must be contiguous), so
 * the fleet is never held in memory.
 */
export function metricsText(store: Store, now: number): Pieces {
  return store.readStream((s) => metricsPieces(s, now));
}

async function* metricsPieces(store: Store, now: number): AsyncGenerator<string | string[]> {
  const counters = await readCounters(store);
  const monitor = await readMonitor(store);
  const head = (name: string, type: 'gauge' | 'counter', help: string) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
  const family = (name: string, type: 'gauge' | 'counter', help: string, samples: [Record<string, string | null> | null, number][]) =>
    head(name, type, help) + samples.map(([l, v]) => `${name}${l ? labels(l) : ''} ${num(v)}\n`).join('');
  const perState = { ...countStates([]), ...(await countDerivedStates(store, now, {})) };
  yield family('agentctl_agents', 'gauge', 'Registered agents per state, derived at read time.', AGENT_STATES.map((s) => [{ state: s }, perState[s]]));
  yield head('agentctl_agent_up', 'gauge', 'Whether the agent is up (active or error: it heartbeats on time).');
  for await (const batch of readAgents(store, now, {}, ['name', 'group_name'], SMALL_ROWS)) {
    const piece: string[] = [];
    for (const { row, derived } of batch) {
      const group = row[K + 1] === null ? '' : String(row[K + 1]);
      piece.push(`agentctl_agent_up{agent="${escapeLabel(String(row[K]))}",group="${escapeLabel(group)}",state="${derived.state}"} ${seedStatus(derived.state) === 'online' ? 1 : 0}\n`);
    }
    yield piece;
  }
  yield head('agentctl_agent_heartbeat_age_seconds', 'gauge', 'Seconds the agent has been silent by its contract: since its last heartbeat, or since its current incarnation started if it has not beaten since.');
  // Silence needs no derived state: the rows of the same agents, without the clock columns.
  for await (const rows of store.agentRowBatches(['name', 'group_name', 'last_heartbeat_at', 'started_at'], {}, SMALL_ROWS)) {
    const piece: string[] = [];
    for (const [name, group, last, started] of rows) {
      const age = heartbeatAgeMs({ lastHeartbeatAt: last === null ? null : Number(last), startedAt: Number(started) }, now);
      piece.push(`agentctl_agent_heartbeat_age_seconds{agent="${escapeLabel(String(name))}",group="${escapeLabel(group === null ? '' : String(group))}"} ${num(Math.max(0, age) / 1000)}\n`);
    }
    yield piece;
  }
  const offsets = await hostClockOffsets(store, -1);
  if (offsets.length) yield family('agentctl_host_clock_offset_seconds', 'gauge', "How far each host's clock is off the database server's, at its agents' last heartbeats (the largest).", offsets.map((h) => [{ host: h.host }, h.maxOffsetMs / 1000]));
  const c = (name: string) => counters[name] ?? 0;
  yield [
    family('agentctl_transitions_total', 'counter', 'State transitions seen by the health loop, by the state entered.', AGENT_STATES.map((s) => [{ to: s }, c(`transitions_total:${s}`)])),
    family('agentctl_heartbeat_timeouts_total', 'counter', 'Agents found stale or offline by the clock (no heartbeat within their contract).', [[null, c('heartbeat_timeouts_total')]]),
    family('agentctl_crash_proofs_total', 'counter', 'Agents found offline by a proof of a local crash (pid gone or reused, host rebooted).', [[null, c('crash_proofs_total')]]),
    family('agentctl_alerts_queued_total', 'counter', 'Alerts decided, by kind.', ['alert', 'reminder', 'recovery', 'test'].map((k) => [{ kind: k }, c(`alerts_queued_total:${k}`)])),
    family('agentctl_alerts_sent_total', 'counter', 'Alert deliveries that reached their receiver.', [[null, c('alerts_sent_total')]]),
    family('agentctl_alerts_failed_total', 'counter', 'Alert delivery attempts that failed (retried on later passes).', [[null, c('alerts_failed_total')]]),
    family('agentctl_alerts_suppressed_total', 'counter', 'Down alerts not sent because of the per-agent cooldown.', [[null, c('alerts_suppressed_total')]]),
    family('agentctl_commands_expired_total', 'counter', 'Commands settled by the health loop because their deadline passed (queued: cancelled; executing: failed).', [[null, c('commands_expired_total')]]),
    family('agentctl_convictions_held_total', 'counter', 'Convictions held for one pass because most of the fleet would have been convicted at once.', [[null, c('convictions_held_total')]]),
    family('agentctl_monitor_suspect_passes_total', 'counter', 'Passes that convicted no one because the health loop suspected itself (paused, clock step).', [[null, c('suspect_passes_total')]]),
    family('agentctl_monitor_passes_total', 'counter', 'Health-loop passes.', [[null, c('passes_total')]]),
    family('agentctl_monitor_last_pass_timestamp_seconds', 'gauge', 'Unix time of the last health-loop pass (0: never).', [[null, (monitor?.lastPassAt ?? 0) / 1000]]),
    family('agentctl_monitor_last_pass_duration_seconds', 'gauge', 'How long the last health-loop pass took.', [[null, (monitor?.lastPassMs ?? 0) / 1000]]),
  ].join('');
}
