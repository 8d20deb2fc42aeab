import type { Store } from './store.js';
import { toAgentRecord } from './rows.js';
import { deriveState } from '../core/state.js';

export interface PurgeResult {
  agents: string[];
  events: number;
  commands: number;
}

/** Rows deleted per transaction when pruning history, so heartbeats keep flowing between batches. */
const BATCH = 20_000;

/**
 * The agents `purgeAgents` would delete: offline, failed or deregistered (by their state as of `now`) and not seen —
 * no heartbeat, or never one since they started — for `olderThanMs`.
 */
export async function agentsToPurge(store: Store, now: number, olderThanMs: number): Promise<string[]> {
  const cutoff = now - olderThanMs;
  const rows = await store.sql.all('SELECT * FROM agents WHERE COALESCE(last_heartbeat_at, started_at) < ? AND updated_at < ? ORDER BY name', [cutoff, cutoff]);
  return rows
    .map(toAgentRecord)
    .filter((a) => a.deregisteredAt !== null || ['offline', 'failed'].includes(deriveState(a, now).state))
    .map((a) => a.name);
}

/** Deletes those agents with their events and commands, in one transaction that re-checks each under the write lock. */
export function purgeAgents(store: Store, now: number, olderThanMs: number): Promise<PurgeResult> {
  return store.tx(async (s) => {
    const names = await agentsToPurge(s, now, olderThanMs);
    let events = 0;
    let commands = 0;
    const count = async (sql: string, name: string) => Number((await s.sql.get<{ n: number }>(sql, [name]))!.n);
    for (const name of names) {
      events += await count('SELECT COUNT(*) AS n FROM events WHERE agent_id = (SELECT id FROM agents WHERE name = ?)', name);
      commands += await count('SELECT COUNT(*) AS n FROM commands WHERE agent_id = (SELECT id FROM agents WHERE name = ?)', name);
      await s.sql.run('DELETE FROM agents WHERE name = ?', [name]); // events and commands go with it (ON DELETE CASCADE)
    }
    return { agents: names, events, commands };
  });
}

/** What pruning history deletes, or with --dry-run would delete. */
export interface PruneResult {
  events: number;
  /** Alerts whose every delivery is settled (sent, or failed for good), with those deliveries. */
  alerts: number;
  /** Commands that finished (completed, failed or cancelled). */
  commands: number;
}

// Only history that is over: an alert still waiting for a receiver and a command still queued or executing stay,
// however old, because somebody is still owed them.
const PRUNABLE = {
  events: 'SELECT id FROM events WHERE at < :cutoff',
  alerts:
    "SELECT id FROM alerts a WHERE created_at < :cutoff AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = a.id AND d.status IN ('pending', 'sending'))",
  commands: "SELECT id FROM commands WHERE state IN ('completed', 'failed', 'cancelled') AND COALESCE(finished_at, created_at) < :cutoff",
} as const;

/** How much history is older than the cutoff and over. */
export async function countHistoryOlderThan(store: Store, now: number, olderThanMs: number): Promise<PruneResult> {
  const count = async (table: keyof typeof PRUNABLE) => Number((await store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM (${PRUNABLE[table]}) h`, { cutoff: now - olderThanMs }))!.n);
  return { events: await count('events'), alerts: await count('alerts'), commands: await count('commands') };
}

/**
 * Deletes history older than `olderThanMs` that is over (see PRUNABLE), in batches of their own transactions so
 * that writers are never held up for long. `signal` stops between batches (for a compromised lock).
 */
export async function pruneHistory(store: Store, now: number, olderThanMs: number, signal?: AbortSignal): Promise<PruneResult> {
  const cutoff = now - olderThanMs;
  const prune = async (table: keyof typeof PRUNABLE): Promise<number> => {
    const del = `DELETE FROM ${table} WHERE id IN (${PRUNABLE[table]} ORDER BY id LIMIT :limit)`;
    let total = 0;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const n = await store.tx(async (s) => (await s.sql.run(del, { cutoff, limit: BATCH })).changes);
      total += n;
      if (n < BATCH) return total;
    }
  };
  return { events: await prune('events'), alerts: await prune('alerts'), commands: await prune('commands') };
}
