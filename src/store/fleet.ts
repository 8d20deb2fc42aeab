/**
 * Questions about the whole fleet that SQL answers without reading every agent into JavaScript: how many agents are
 * in each state, and which are the worst (for `check`). The state is derived in SQL by DERIVED_STATE_SQL.
 */
import type { Store } from './store.js';
import type { AgentState } from './rows.js';
import type { Dialect } from './sql.js';
import { greatest, truncInt } from './dialect.js';
import { PG_CLOCK_SKEW_SQL } from './postgres/protocol.js';

/**
 * The state core/state.ts deriveState gives an agents row at :now, as an SQL expression, for queries that count or
 * pick agents by their state without reading every row into JavaScript (check). It must say exactly what
 * deriveState says: test/faults/properties.test.ts compares the two over generated rows.
 */
export function derivedStateSql(d: Dialect): string {
  const since = greatest(d, 'COALESCE(last_heartbeat_at, started_at)', 'started_at');
  return `CASE
    WHEN state IN ('offline', 'failed') THEN state
    WHEN state = 'maintenance' AND (maintenance_until IS NULL OR maintenance_until > :now) THEN state
    WHEN :now - ${since} >= offline_after_ms THEN 'offline'
    WHEN :now - ${since} >= ${truncInt(d, 'interval_ms * stale_multiplier')} THEN 'stale'
    WHEN state = 'maintenance' THEN
      CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < started_at THEN 'initializing' WHEN reported_status = 'error' THEN 'error' ELSE 'active' END
    ELSE state
  END`;
}

/** derivedStateSql on SQLite. */
export const DERIVED_STATE_SQL = derivedStateSql('sqlite');

/** Which agents a fleet query covers: the named ones (deregistered or not), else the registered ones; in a group. */
export interface FleetScope {
  names?: string[];
  group?: string;
}

/** An agent that `check` names: its derived state and what it last said. */
export interface ProblemAgent {
  name: string;
  state: AgentState;
  message: string | null;
  lastHeartbeatAt: number | null;
}

/** How many agents of `scope` are in each state derived at `now` (states with none are absent). */
export async function countDerivedStates(store: Store, now: number, scope: FleetScope): Promise<Partial<Record<AgentState, number>>> {
  const { where, args } = scopeWhere(scope);
  const rows = await store.sql.all<{ st: AgentState; n: number }>(`SELECT st, count(*) AS n FROM (SELECT ${derivedStateSql(store.sql.dialect)} AS st FROM agents${where}) d GROUP BY st`, { ...args, now });
  return Object.fromEntries(rows.map((r) => [r.st, Number(r.n)]));
}

/**
 * The worst `limit` agents of `scope` by their state derived at `now`: offline and failed first, then stale and
 * error, by name within each; agents in other states are not problems and are not listed.
 */
export async function worstAgents(store: Store, now: number, scope: FleetScope, limit: number): Promise<ProblemAgent[]> {
  const { where, args } = scopeWhere(scope);
  const rows = await store.sql.all<{ name: string; st: AgentState; message: string | null; last_heartbeat_at: number | null }>(
    `SELECT name, st, message, last_heartbeat_at FROM (SELECT name, message, last_heartbeat_at, ${derivedStateSql(store.sql.dialect)} AS st FROM agents${where}) d
     WHERE st IN ('offline', 'failed', 'stale', 'error') ORDER BY CASE WHEN st IN ('offline', 'failed') THEN 0 ELSE 1 END, name LIMIT :limit`,
    { ...args, now, limit },
  );
  return rows.map((r) => ({ name: r.name, state: r.st, message: r.message, lastHeartbeatAt: r.last_heartbeat_at == null ? null : Number(r.last_heartbeat_at) }));
}

function scopeWhere(scope: FleetScope): { where: string; args: Record<string, unknown> } {
  const where: string[] = [];
  const args: Record<string, unknown> = {};
  if (scope.names?.length) {
    const names = [...new Set(scope.names)];
    where.push(`name IN (${names.map((_, i) => `:n${i}`).join(', ')})`);
    names.forEach((n, i) => (args[`n${i}`] = n));
  } else where.push('deregistered_at IS NULL');
  if (scope.group !== undefined) {
    where.push('group_name = :group');
    args.group = scope.group;
  }
  return { where: ` WHERE ${where.join(' AND ')}`, args };
}

/** A host whose writers' clocks were off at their last heartbeat, by the largest offset among its agents. */
export interface HostClockOffset {
  host: string;
  maxOffsetMs: number;
  agents: number;
}

/**
 * Hosts whose writers' clocks are off the database server's by more than `minOffsetMs` (-1: every host that sent its
 * clock). Only a database server records the writer's clock: on SQLite every writer shares this host's, so none.
 */
export async function hostClockOffsets(store: Store, minOffsetMs: number): Promise<HostClockOffset[]> {
  if (store.sql.dialect !== 'postgres') return [];
  const rows = await store.sql.all<{ host: string; max_offset_ms: number; agents: number }>(PG_CLOCK_SKEW_SQL, { max_offset_ms: minOffsetMs });
  return rows.map((r) => ({ host: r.host, maxOffsetMs: Number(r.max_offset_ms), agents: Number(r.agents) }));
}

/** A clock off by more than this is reported (status, db-check, metrics). */
export const MAX_CLOCK_OFFSET_MS = 1000;
