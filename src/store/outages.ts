/**
 * Hosts that went silent as a whole (migration 0007_hosts): one open outage per host, opened by whichever pass
 * inserts it first, ended by whichever pass first sees the host speak again. SQL lives here; the rule that finds a
 * silent host is core/health/hosts.ts, the pass step that acts on it core/health/outages.ts.
 */
import type { Store } from './store.js';
import { type AgentRecord, type AgentState, numOrNull, toAgentRecord } from './rows.js';

export interface OutageRecord {
  id: number;
  host: string;
  detectedAt: number;
  silentSince: number;
  agents: number;
  agentNames: string[];
  detectedBy: string | null;
  endedAt: number | null;
  endedReason: string | null;
}

function outageRecord(r: Record<string, unknown>): OutageRecord {
  return {
    id: Number(r.id),
    host: String(r.host),
    detectedAt: Number(r.detected_at),
    silentSince: Number(r.silent_since),
    agents: Number(r.agents),
    agentNames: JSON.parse(String(r.agent_names)) as string[],
    detectedBy: r.detected_by == null ? null : String(r.detected_by),
    endedAt: r.ended_at == null ? null : Number(r.ended_at),
    endedReason: r.ended_reason == null ? null : String(r.ended_reason),
  };
}

/** The hosts of agents past a deadline at `now` (through agents_check: what is due, not what is registered). */
export async function hostsWithDueAgents(store: Store, now: number): Promise<string[]> {
  const rows = await store.sql.all<{ host: string }>('SELECT DISTINCT host FROM agents WHERE check_at <= :now AND host IS NOT NULL', { now });
  return rows.map((r) => String(r.host));
}

/** The live agents recorded on `host`: registered, and neither offline, failed nor in maintenance. */
export async function liveAgentsOn(store: Store, host: string): Promise<AgentRecord[]> {
  const rows = await store.sql.all("SELECT * FROM agents WHERE host = :host AND deregistered_at IS NULL AND state NOT IN ('offline', 'failed', 'maintenance') ORDER BY name", { host });
  return rows.map(toAgentRecord);
}

/**
 * Opens an outage of `o.host` unless one is open already (the partial unique index host_outages_open): returns its
 * id to the one caller that inserted it, null to every other. Call inside store.tx(), with what the winner writes.
 */
export async function openOutage(store: Store, o: { host: string; detectedAt: number; silentSince: number; agentNames: string[]; detectedBy: string | null }): Promise<number | null> {
  const row = await store.sql.get<{ id: number }>(
    `INSERT INTO host_outages (host, detected_at, silent_since, agents, agent_names, detected_by) VALUES (:host, :at, :since, :n, :names, :by)
     ON CONFLICT (host) WHERE ended_at IS NULL DO NOTHING RETURNING id`,
    { host: o.host, at: o.detectedAt, since: o.silentSince, n: o.agentNames.length, names: JSON.stringify(o.agentNames), by: o.detectedBy },
  );
  return row ? Number(row.id) : null;
}

export async function openOutages(store: Store): Promise<OutageRecord[]> {
  return (await store.sql.all('SELECT * FROM host_outages WHERE ended_at IS NULL ORDER BY host')).map(outageRecord);
}

/** Outages, newest first (for tests and db-check). */
export async function recentOutages(store: Store, limit = 50): Promise<OutageRecord[]> {
  return (await store.sql.all('SELECT * FROM host_outages ORDER BY id DESC LIMIT ?', [limit])).map(outageRecord);
}

/** Ends an open outage; true for the one caller that ended it. Call inside store.tx(). */
export async function endOutage(store: Store, id: number, at: number, reason: string): Promise<boolean> {
  return (await store.sql.run('UPDATE host_outages SET ended_at = :at, ended_reason = :reason WHERE id = :id AND ended_at IS NULL', { id, at, reason })).changes === 1;
}

/** Whether an outage of `host` covers time `at`: from its host's last sign of life until it ended (or now). */
export async function inOutage(store: Store, host: string, at: number): Promise<boolean> {
  return Boolean(await store.sql.get('SELECT 1 AS one FROM host_outages WHERE host = :host AND silent_since <= :at AND (ended_at IS NULL OR ended_at >= :at)', { host, at }));
}

/** The host's latest heartbeat and its health loops' latest pass, to tell whether it spoke after an outage began. */
export async function hostLastSigns(store: Store, host: string): Promise<{ heartbeatAt: number | null; loopPassAt: number | null }> {
  const hb = await store.sql.get<{ at: number | null }>('SELECT max(last_heartbeat_at) AS at FROM agents WHERE host = :host', { host });
  const lp = await store.sql.get<{ at: number | null }>('SELECT max(last_pass_at) AS at FROM health_loops WHERE host = :host', { host });
  return { heartbeatAt: numOrNull(hb?.at), loopPassAt: numOrNull(lp?.at) };
}

/**
 * Writes the host's one event: a note in the history of `agent` (its state unchanged: from and to are the state it
 * is in), with evidence rule 'outage'. Returns the event id. Call inside store.tx().
 */
export async function writeHostEvent(store: Store, agent: { id: number; name: string; state: AgentState }, at: number, reason: string, evidence: Record<string, unknown>): Promise<number> {
  const row = await store.sql.get<{ id: number }>(
    `INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
     VALUES (:id, :name, :at, :state, :state, :reason, :evidence) RETURNING id`,
    { id: agent.id, name: agent.name, at, state: agent.state, reason, evidence: JSON.stringify({ ...evidence, rule: 'outage' }) },
  );
  return Number(row!.id);
}
