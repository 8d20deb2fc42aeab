import type { Store } from '../../store/store.js';
import { type Cooldown, readCooldowns } from '../../store/alerts.js';
import { CLOCK_COLUMNS, type ReadAgent, readAgents } from '../agents.js';
import { iso } from '../duration.js';
import { countStates, seedStatus } from '../state.js';
import { healthLoopStatus } from './loop-status.js';
import { type Pieces, joinPieces, jsonIso as isoText, jsonNumber as num, jsonString, jsonStringOrNull as str, nestedJson as nested } from '../json-text.js';

const COLUMNS = ['id', 'name', 'group_name', 'host', 'pid', 'message', 'metadata'] as const;
const K = CLOCK_COLUMNS.length;

/**
 * Seed 003's heartbeat map at `now` as JSON text, in pieces written as the agents are read (one piece per agent),
 * so a fleet of any size is never held in memory: every registered agent keyed by name with its seed status
 * (online / offline / unknown) beside the rich state, the alerts standing for agents that are down, and the
 * summary counts. Stored metadata is spliced as stored (the schema holds it to a JSON object). The document is
 * the one JSON.stringify(…, null, 2) gives, and is validated by src/schemas/heartbeat-map.schema.json.
 */
export function heartbeatMapText(store: Store, now: number): Pieces {
  return store.readStream((s) => mapPieces(s, now));
}

type Down = { id: number; name: string; state: string; since: number; reason: string | null };

/** What the agents' pieces count as they go. */
interface Tally {
  total: number;
  seen: { online: number; offline: number; unknown: number };
  byState: ReturnType<typeof countStates>;
  down: Down[];
}

// The per-row work is in plain functions, the async generator only hands batches on: V8 optimizes a hot loop inside
// an async generator by compiling the whole generator, which at some thousands of agents costs more CPU than it saves.

/** The pieces of one batch of agents. */
function agentPieces(batch: ReadAgent[], now: number, t: Tally): string[] {
  const pieces: string[] = [];
  for (const { row: r, clock: c, derived: d } of batch) {
    const status = seedStatus(d.state);
    t.seen[status]++;
    t.byState[d.state]++;
    const name = String(r[K + 1]);
    const key = jsonString(name);
    const age = c.lastHeartbeatAt === null ? null : now - c.lastHeartbeatAt;
    pieces.push(`${t.total++ ? ',' : ''}\n    ${key}: {\n      "id": ${key},\n      "name": ${key},\n      "status": "${status}",\n      "state": "${d.state}",` +
      `\n      "state_since": ${isoText(d.since)},\n      "state_reason": ${str(d.reason)},\n      "last_heartbeat": ${isoText(c.lastHeartbeatAt)},` +
      `\n      "seconds_since_heartbeat": ${age === null ? 'null' : num(Math.max(0, Math.floor(age / 1000)))},` +
      `\n      "heartbeat_interval_seconds": ${num(c.intervalMs / 1000)},\n      "offline_threshold_seconds": ${num(c.offlineAfterMs / 1000)},` +
      `\n      "group": ${str(r[K + 2])},\n      "host": ${str(r[K + 3])},\n      "pid": ${r[K + 4] === null ? 'null' : num(r[K + 4])},` +
      `\n      "message": ${str(r[K + 5])},\n      "metadata": ${typeof r[K + 6] === 'string' ? r[K + 6] : '{}'}\n    }`);
    if (status === 'offline') t.down.push({ id: Number(r[K]), name, state: d.state, since: d.since, reason: d.reason });
  }
  return pieces;
}

/** The pieces of the alerts of a chunk of down agents, the first being number `from`. */
function alertPieces(chunk: Down[], from: number, cooldowns: Map<number, Cooldown>, now: number): string[] {
  const pieces: string[] = [];
  for (let j = 0; j < chunk.length; j++) {
    const a = chunk[j]!;
    const cd = cooldowns.get(a.id);
    const secondsOffline = Math.max(0, Math.floor((now - a.since) / 1000));
    const alert = {
      agent_id: a.name,
      agent_name: a.name,
      state: a.state,
      seconds_offline: secondsOffline,
      alert_time: iso(cd?.downState ? cd.lastAlertAt : a.since),
      alerted: Boolean(cd?.downState),
      message: `Agent ${a.name} ${a.state} for ${secondsOffline}s${a.reason ? ` (${a.reason})` : ''}`,
    };
    pieces.push(`${from + j ? ',' : ''}\n    ${nested(alert, '    ')}`);
  }
  return pieces;
}

async function* mapPieces(store: Store, now: number): AsyncGenerator<string | string[]> {
  const loop = await healthLoopStatus(store, now); // read first: the connection is busy while the agents are iterated
  const health = { last_pass: iso(loop.lastPassAt), seconds_since_pass: loop.ageMs === null ? null : Math.floor(loop.ageMs / 1000), overdue: loop.overdue };
  yield `{\n  "timestamp": "${new Date(now).toISOString()}",\n  "generator": "agentctl",\n  "health_loop": ${nested(health, '  ')},\n  "agents": {`;
  const t: Tally = { total: 0, seen: { online: 0, offline: 0, unknown: 0 }, byState: countStates([]), down: [] };
  for await (const batch of readAgents(store, now, {}, COLUMNS)) yield agentPieces(batch, now, t);
  const { down } = t;
  yield `${t.total ? '\n  ' : ''}},\n  "alerts": [`;
  // Only the agents that are down are held, and their cooldowns read once the agents' iteration is over, a chunk
  // of agents per query.
  const CHUNK = 500;
  for (let from = 0; from < down.length; from += CHUNK) {
    const chunk = down.slice(from, from + CHUNK);
    yield alertPieces(chunk, from, await readCooldowns(store, chunk.map((a) => a.id)), now);
  }
  const summary = { total_agents: t.total, online_agents: t.seen.online, offline_agents: t.seen.offline, unknown_agents: t.seen.unknown, by_state: t.byState };
  yield `${down.length ? '\n  ' : ''}],\n  "summary": ${nested(summary, '  ')}\n}\n`;
}

/** The heartbeat map at `now` as an object (heartbeatMapText parsed): for the library and the health loop's --map file. */
export async function buildHeartbeatMap(store: Store, now: number) {
  return JSON.parse(await joinPieces(heartbeatMapText(store, now))) as {
    timestamp: string;
    generator: 'agentctl';
    health_loop: { last_pass: string | null; seconds_since_pass: number | null; overdue: boolean };
    agents: Record<string, Record<string, unknown>>;
    alerts: Record<string, unknown>[];
    summary: { total_agents: number; online_agents: number; offline_agents: number; unknown_agents: number; by_state: Record<string, number> };
  };
}
