import type { Store } from '../store/store.js';
import { toAgentRecord } from '../store/rows.js';
import { deriveState } from './state.js';

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
export function agentsToPurge(store: Store, now: number, olderThanMs: number): string[] {
  const cutoff = now - olderThanMs;
  const rows = store.db
    .prepare('SELECT * FROM agents WHERE COALESCE(last_heartbeat_at, started_at) < ? AND updated_at < ? ORDER BY name')
    .all(cutoff, cutoff) as Record<string, unknown>[];
  return rows
    .map(toAgentRecord)
    .filter((a) => a.deregisteredAt !== null || ['offline', 'failed'].includes(deriveState(a, now).state))
    .map((a) => a.name);
}

/** Deletes those agents with their events and commands, in one transaction that re-checks each under the write lock. */
export function purgeAgents(store: Store, now: number, olderThanMs: number): PurgeResult {
  return store.immediate(() => {
    const names = agentsToPurge(store, now, olderThanMs);
    let events = 0;
    let commands = 0;
    const countEvents = store.db.prepare('SELECT COUNT(*) FROM events WHERE agent_id = (SELECT id FROM agents WHERE name = ?)').pluck();
    const countCommands = store.db.prepare('SELECT COUNT(*) FROM commands WHERE agent_id = (SELECT id FROM agents WHERE name = ?)').pluck();
    const del = store.db.prepare('DELETE FROM agents WHERE name = ?');
    for (const name of names) {
      events += countEvents.get(name) as number;
      commands += countCommands.get(name) as number;
      del.run(name); // events and commands go with it (ON DELETE CASCADE)
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
export function countHistoryOlderThan(store: Store, now: number, olderThanMs: number): PruneResult {
  const count = (table: keyof typeof PRUNABLE) => store.db.prepare(`SELECT COUNT(*) FROM (${PRUNABLE[table]})`).pluck().get({ cutoff: now - olderThanMs }) as number;
  return { events: count('events'), alerts: count('alerts'), commands: count('commands') };
}

/**
 * Deletes history older than `olderThanMs` that is over (see PRUNABLE), in batches of their own transactions so
 * that writers are never held up for long. `signal` stops between batches (for a compromised lock).
 */
export function pruneHistory(store: Store, now: number, olderThanMs: number, signal?: AbortSignal): PruneResult {
  const cutoff = now - olderThanMs;
  const prune = (table: keyof typeof PRUNABLE): number => {
    const del = store.db.prepare(`DELETE FROM ${table} WHERE id IN (${PRUNABLE[table]} ORDER BY id LIMIT :limit)`);
    let total = 0;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const n = store.immediate(() => del.run({ cutoff, limit: BATCH }).changes);
      total += n;
      if (n < BATCH) return total;
    }
  };
  return { events: prune('events'), alerts: prune('alerts'), commands: prune('commands') };
}
